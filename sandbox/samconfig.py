"""A project's samconfig file and its parameters, read as the SAM CLI reads them.

``samconfig.toml`` (or ``.yaml``/``.yml``) holds ``version = 0.1`` and tables
``[<env>.<command>.parameters]``; ``[<env>.global.parameters]`` applies to every command. The
sandbox reads the ``deploy`` command's keys. Parameter values come from the command line over
the file over the template's defaults; unlike the SAM CLI, overrides given on the command line
are merged with the file's instead of replacing them all.
"""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.errors import UsageError

CONFIG_NAMES = ("samconfig.toml", "samconfig.yaml", "samconfig.yml")
DEFAULT_ENV = "default"
# The environment a local engine reads first, when the file has one: local values beside AWS ones.
LOCAL_ENV = "local"
COMMAND = "deploy"


@dataclass(frozen=True)
class SamConfig:
    """The deploy keys of one environment of a samconfig file (empty when there is no file)."""

    path: Path | None = None
    env: str = DEFAULT_ENV
    values: dict[str, Any] = field(default_factory=dict)

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        return None if value is None else str(value)

    @property
    def parameter_overrides(self) -> dict[str, str]:
        return parse_key_values(
            self.values.get("parameter_overrides"), what=f"{self.where}: parameter_overrides"
        )

    @property
    def tags(self) -> dict[str, str]:
        return parse_key_values(self.values.get("tags"), what=f"{self.where}: tags")

    @property
    def capabilities(self) -> list[str]:
        value = self.values.get("capabilities")
        if value is None:
            return []
        return value.split() if isinstance(value, str) else [str(item) for item in value]

    @property
    def where(self) -> str:
        return f"{self.path.name if self.path else 'samconfig'} [{self.env}.{COMMAND}.parameters]"


def find_config_file(project_dir: Path) -> Path | None:
    """The project's samconfig file, as the SAM CLI looks for it beside the template."""
    return next((project_dir / name for name in CONFIG_NAMES if (project_dir / name).is_file()), None)


def _read_document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"cannot read the config file {path}: {error.strerror}") from error
    try:
        if path.suffix == ".toml":
            document: Any = tomllib.loads(text)
        else:
            import yaml  # PyYAML: only where a YAML samconfig is read

            document = yaml.safe_load(text) or {}
    except Exception as error:  # tomllib's and yaml's errors share no base worth naming
        raise UsageError(f"{path.name} is not valid: {' '.join(str(error).split())}") from error
    if not isinstance(document, dict):
        raise UsageError(f"{path.name} is not a samconfig file (no tables)")
    return document


def environments(path: Path) -> list[str]:
    """The environments a samconfig file defines (its top-level tables but ``version``)."""
    return [name for name, value in _read_document(path).items() if isinstance(value, dict)]


def read_samconfig(path: Path | None, env: str | None, *, is_local: bool = True) -> SamConfig:
    """The deploy keys of ``env`` (global ones first, deploy's over them).

    With no env named, a local engine reads ``local`` when the file has it, else ``default``.
    An env named explicitly must exist (the SAM CLI fails the same way).
    """
    if path is None:
        if env not in (None, DEFAULT_ENV, LOCAL_ENV):
            raise UsageError(f"--config-env {env}: the project has no samconfig file")
        return SamConfig()
    document = _read_document(path)
    if env is None:
        env = LOCAL_ENV if is_local and isinstance(document.get(LOCAL_ENV), dict) else DEFAULT_ENV
    elif not isinstance(document.get(env), dict):
        known = ", ".join(name for name, value in document.items() if isinstance(value, dict)) or "none"
        raise UsageError(f"--config-env {env}: {path.name} has no such environment", hint=f"it has: {known}")
    tables = document.get(env) or {}
    values: dict[str, Any] = {}
    for command in ("global", COMMAND):
        section = tables.get(command, {})
        parameters = section.get("parameters", {}) if isinstance(section, dict) else {}
        if isinstance(parameters, dict):
            values.update(parameters)
    return SamConfig(path, env, values)


def parse_key_values(value: Any, *, what: str) -> dict[str, str]:
    """``Key=Value`` pairs as the SAM CLI takes them: one string (shell-quoted), or a list of them.

    CloudFormation's own ``ParameterKey=K,ParameterValue=V`` form is accepted too.
    """
    if value is None:
        return {}
    texts = [value] if isinstance(value, str) else [str(item) for item in value]
    pairs: dict[str, str] = {}
    for text in texts:
        try:
            tokens = shlex.split(text)
        except ValueError as error:
            raise UsageError(f"{what}: {error} in {text!r}") from error
        for token in tokens:
            if token.startswith("ParameterKey="):
                key, comma, rest = token.removeprefix("ParameterKey=").partition(",")
                if not comma or not rest.startswith("ParameterValue="):
                    raise UsageError(f"{what}: {token!r} lacks ParameterValue=")
                pairs[key] = rest.removeprefix("ParameterValue=")
                continue
            key, equals, item = token.partition("=")
            if not equals or not key:
                raise UsageError(
                    f"{what}: {token!r} is not Key=Value", hint='write Name=value, quoting spaces: Name="a b"'
                )
            pairs[key] = item
    return pairs


def resolve_parameters(
    template: dict[str, Any], *layers: dict[str, str], source: str = "the template"
) -> dict[str, str]:
    """The parameter values to deploy with: ``layers`` in rising precedence, checked against ``template``.

    An unknown name, a value outside ``AllowedValues`` and a required parameter left without a
    value are refused before any call. Values a template's default already gives are not sent.
    """
    declared: dict[str, Any] = template.get("Parameters") or {}
    values: dict[str, str] = {}
    for layer in layers:
        values.update(layer)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise UsageError(
            f"unknown parameter {', '.join(unknown)}: {source} declares "
            f"{', '.join(sorted(declared)) or 'no parameters'}",
            hint="check the name in --parameter-overrides or samconfig's parameter_overrides",
        )
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {}
        allowed = [str(choice) for choice in spec.get("AllowedValues") or []]
        if name in values and allowed and values[name] not in allowed:
            raise UsageError(
                f"parameter {name}={values[name]!r} is not allowed",
                hint=f"choose one of: {', '.join(allowed)}",
            )
        if name not in values and "Default" not in spec:
            raise UsageError(
                f"parameter {name} has no value and no Default in {source}",
                hint=f"pass --parameter-overrides {name}=VALUE or set it in samconfig.toml's parameter_overrides",
            )
    return values
