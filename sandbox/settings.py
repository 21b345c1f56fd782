"""Settings: one frozen dataclass, read at call time from flags > SANDBOX_* env > defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sandbox.errors import UsageError

PROJECT_DIR = Path(__file__).resolve().parent.parent
# embedded: MiniStack as a subprocess of the sandbox (no Docker); the others run in Docker
# through compose.yaml.
ENGINES = ("embedded", "localstack", "ministack-docker")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SANDBOX_{name}") or default


def default_lambda_workers() -> int:
    """One warm Lambda worker per CPU for each function."""
    return os.cpu_count() or 2


def _whole_number(name: str, default: int) -> int:
    text = _env(name, str(default))
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(
            f"SANDBOX_{name}={text!r} is not a whole number",
            hint=f"unset it, or give 0 or more (default {default})",
        )
    return value


@dataclass(frozen=True)
class Settings:
    """Where the engine runs and what the stack is called."""

    project_dir: Path = PROJECT_DIR
    state_dir: Path = PROJECT_DIR / ".sandbox"
    port: int = 4566
    region: str = "us-east-1"
    stack_name: str = "saga-sandbox"
    engine: str = "embedded"
    # Warm workers per Lambda function on the embedded engine; more invocations queue (0: no cap).
    lambda_workers: int = field(default_factory=default_lambda_workers)
    # The AWS side (`--target aws`): the stack is saga-sandbox-STAGE; an AWS-compatible endpoint
    # points the AWS code path somewhere offline.
    stage: str = "dev"
    aws_endpoint_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, **flags: Any) -> Settings:
        """Settings from the given flags (None means unset), then the environment."""
        project_dir = Path(_env("PROJECT_DIR", str(PROJECT_DIR)))
        settings = cls(
            project_dir=project_dir,
            state_dir=Path(_env("STATE_DIR", str(project_dir / ".sandbox"))),
            port=int(_env("PORT", "4566")),
            region=_env("REGION", "us-east-1"),
            stack_name=_env("STACK_NAME", "saga-sandbox"),
            engine=_env("ENGINE", "embedded"),
            lambda_workers=_whole_number("LAMBDA_WORKERS", default_lambda_workers()),
            stage=_env("STAGE", "dev"),
            aws_endpoint_url=_env("AWS_ENDPOINT_URL", "") or None,
        )
        settings = replace(settings, **{key: value for key, value in flags.items() if value is not None})
        if settings.engine not in ENGINES:
            raise UsageError(
                f"unknown engine {settings.engine!r} (from --engine or SANDBOX_ENGINE)",
                hint=f"choose one of: {', '.join(ENGINES)}",
            )
        return settings

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def template_path(self) -> Path:
        return self.project_dir / "template.yaml"

    @property
    def compose_path(self) -> Path:
        return self.project_dir / "compose.yaml"

    @property
    def cache_dir(self) -> Path:
        """Built artifacts kept between runs (function dependencies), keyed by content hash."""
        return self.state_dir / "cache"
