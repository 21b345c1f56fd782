"""Settings: one frozen dataclass, read at call time from flags > SANDBOX_* env > samconfig > defaults.

The project is the folder of its SAM template: ``--template-file`` (env SANDBOX_TEMPLATE_FILE),
else ``template.yaml``/``template.yml`` in the current folder (as the SAM CLI looks), else the
bundled demo. Its state lives beside the template (``.sandbox/``); its stack is named by
``--stack-name``, its samconfig file or its folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sandbox.errors import UsageError
from sandbox.samconfig import SamConfig, find_config_file, read_samconfig

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEMO_TEMPLATE = PROJECT_DIR / "template.yaml"
DEMO_STACK_NAME = "saga-sandbox"
TEMPLATE_NAMES = ("template.yaml", "template.yml")
# embedded: MiniStack as a subprocess of the sandbox (no Docker); the others run in Docker
# through compose.yaml.
ENGINES = ("embedded", "localstack", "ministack-docker")
# Flags the CLI's project options set for the command that runs (see cli.options.project_command).
command_flags: ContextVar[dict[str, Any] | None] = ContextVar("command_flags", default=None)


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SANDBOX_{name}") or default


def default_lambda_workers() -> int:
    """One warm Lambda worker per CPU for each function."""
    return os.cpu_count() or 2


def default_cache_dir() -> Path:
    """Built dependencies and Lambda runtimes, shared by every project of this user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "saga-sandbox"


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


def time_scale_of(text: Any, source: str) -> float | None:
    """A time scale (``--time-scale`` or SANDBOX_TIME_SCALE): a speed-up above 0, ``max`` (math.inf), or None."""
    if text is None or text == "":
        return None  # without importing the engine's package: every command loads settings
    from sandbox.engine_patches.clock import parse_time_scale  # the engine's own reading of it

    try:
        return parse_time_scale(text)
    except ValueError as error:
        raise UsageError(f"{source}: {error}", hint="give e.g. 10 (ten times faster), 0.5, or max") from None


def format_time_scale(speedup: float | None) -> str:
    """``10x``, ``max (waits skipped)`` or the default clock, for people."""
    if speedup is None:
        return "default (Wait states and retries 100x, timeouts real)"
    if speedup == float("inf"):
        return "max (waits skipped)"
    return f"{speedup:g}x"


def find_template(folder: Path) -> Path | None:
    """The SAM template of ``folder``, as the SAM CLI looks for it."""
    return next((folder / name for name in TEMPLATE_NAMES if (folder / name).is_file()), None)


def stack_name_of(folder: Path) -> str:
    """A CloudFormation stack name made from a folder's name (letters, digits and dashes)."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", folder.name).strip("-")
    if not name or not name[0].isalpha():
        name = f"sandbox-{name}".rstrip("-")
    return name[:128]


@contextmanager
def flags_of_command(**flags: Any) -> Iterator[None]:
    """Make ``flags`` (None means unset) the project flags every Settings.load of this command sees."""
    token = command_flags.set({key: value for key, value in flags.items() if value is not None})
    try:
        yield
    finally:
        command_flags.reset(token)


@dataclass(frozen=True)
class Settings:
    """Which project and stack, where the engine runs, and what the deploy passes."""

    project_dir: Path = PROJECT_DIR
    state_dir: Path = PROJECT_DIR / ".sandbox"
    port: int = 4566
    region: str = "us-east-1"
    stack_name: str = DEMO_STACK_NAME
    engine: str = "embedded"
    # Warm workers per Lambda function on the embedded engine; more invocations queue (0: no cap).
    lambda_workers: int = field(default_factory=default_lambda_workers)
    # The AWS side (`--target aws`): the stack is saga-sandbox-STAGE; an AWS-compatible endpoint
    # points the AWS code path somewhere offline.
    stage: str = "dev"
    aws_endpoint_url: str | None = None
    # The template's file (None: template.yaml in project_dir) and the samconfig choices.
    template_file: Path | None = None
    config_file: Path | None = None
    config_env: str | None = None
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    cache_dir: Path = field(default_factory=default_cache_dir)
    # The saga clock's speed-up on the sandbox's own engines (math.inf: `max`); None keeps the
    # default clock (Wait states and retries compressed, every other clock real).
    time_scale: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, **flags: Any) -> Settings:
        """Settings from the given flags (None means unset), the command's project flags, the environment."""
        flags = {
            **(command_flags.get() or {}),
            **{key: value for key, value in flags.items() if value is not None},
        }
        template = _template_file(flags.pop("template_file", None), flags.pop("project_dir", None))
        project_dir = template.parent
        named_config = flags.pop("config_file", None) or _env("CONFIG_FILE", "")
        config_file = Path(named_config).resolve() if named_config else find_config_file(project_dir)
        config_env = flags.pop("config_env", None) or _env("CONFIG_ENV", "") or None
        samconfig = read_samconfig(config_file, config_env)
        default_stack = DEMO_STACK_NAME if template == DEMO_TEMPLATE else stack_name_of(project_dir)
        settings = cls(
            project_dir=project_dir,
            state_dir=Path(_env("STATE_DIR", str(project_dir / ".sandbox"))),
            port=int(_env("PORT", "4566")),
            region=_env("REGION", samconfig.text("region") or "us-east-1"),
            stack_name=_env("STACK_NAME", samconfig.text("stack_name") or default_stack),
            engine=_env("ENGINE", "embedded"),
            lambda_workers=_whole_number("LAMBDA_WORKERS", default_lambda_workers()),
            stage=_env("STAGE", "dev"),
            aws_endpoint_url=_env("AWS_ENDPOINT_URL", "") or None,
            # A template named as the SAM CLI would find it is not kept: the folder says it all.
            template_file=None if template == find_template(project_dir) else template,
            config_file=config_file,
            config_env=config_env,  # as named: unnamed, each target reads its own (local or default)
            cache_dir=Path(_env("CACHE_DIR", str(default_cache_dir()))),
            time_scale=time_scale_of(_env("TIME_SCALE", ""), "SANDBOX_TIME_SCALE"),
        )
        settings = replace(settings, **flags)
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
        return self.template_file or find_template(self.project_dir) or self.project_dir / "template.yaml"

    @property
    def is_demo(self) -> bool:
        """Whether the project is the bundled order demo (its catalog, its order API)."""
        return self.template_path.resolve() == DEMO_TEMPLATE

    @property
    def compose_path(self) -> Path:
        """The container engines' compose file: the sandbox's own, whatever the project."""
        return PROJECT_DIR / "compose.yaml"

    def samconfig(self, *, is_local: bool = True) -> SamConfig:
        """The deploy keys of the project's samconfig environment (none without a file)."""
        return read_samconfig(self.config_file, self.config_env, is_local=is_local)


def _template_file(named: Any, project_dir: Any) -> Path:
    """The template named by --template-file (or SANDBOX_TEMPLATE_FILE), else the project folder's
    (SANDBOX_PROJECT_DIR), else the current folder's, else the bundled demo's."""
    named = named or _env("TEMPLATE_FILE", "")
    if named:
        path = Path(named).expanduser().resolve()
        if path.is_dir():
            path = find_template(path) or path / "template.yaml"
        if not path.is_file():
            raise UsageError(f"template not found: {named}", hint="give the path of your SAM template")
        return path
    folder = project_dir or _env("PROJECT_DIR", "")
    if folder:
        resolved = Path(folder).expanduser().resolve()
        return find_template(resolved) or resolved / "template.yaml"
    return find_template(Path.cwd().resolve()) or DEMO_TEMPLATE
