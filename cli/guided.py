"""`sandbox deploy --guided`: ask what `sam deploy --guided` asks, and save it to samconfig.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.output import console
from sandbox.packaging import load_template
from sandbox.samconfig import COMMAND, DEFAULT_ENV, LOCAL_ENV, parse_key_values
from sandbox.settings import Settings


def _quote(value: str) -> str:
    return f'"{value}"' if not value or any(char.isspace() for char in value) else value


def guided_values(settings: Settings, *, is_local: bool) -> dict[str, Any]:
    """Ask on the terminal for the stack name, region, each parameter and the change set's review."""
    samconfig = settings.samconfig(is_local=is_local)
    template = load_template(settings.template_path)
    values: dict[str, Any] = {
        "stack_name": typer.prompt("Stack name", default=samconfig.text("stack_name") or settings.stack_name),
        "region": typer.prompt("AWS region", default=samconfig.text("region") or settings.region),
    }
    current = samconfig.parameter_overrides
    overrides: dict[str, str] = {}
    for name, spec in (template.get("Parameters") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        allowed = spec.get("AllowedValues")
        label = f"Parameter {name}" + (f" ({', '.join(map(str, allowed))})" if allowed else "")
        default = current.get(name, spec.get("Default"))
        answer = typer.prompt(label, default=None if default is None else str(default))
        overrides[name] = str(answer)
    values["parameter_overrides"] = " ".join(f"{name}={_quote(value)}" for name, value in overrides.items())
    parse_key_values(values["parameter_overrides"], what="the answers")  # what we write reads back
    values["confirm_changeset"] = typer.confirm(
        "Show the change set and ask before deploying it?",
        default=bool(samconfig.values.get("confirm_changeset")),
    )
    values["capabilities"] = samconfig.values.get("capabilities", "CAPABILITY_IAM CAPABILITY_AUTO_EXPAND")
    return values


def save_samconfig(path: Path, env: str, values: dict[str, Any]) -> None:
    """Write ``values`` into ``[env.deploy.parameters]`` of ``path``, keeping the rest of the file as it is."""
    import tomlkit  # a TOML library that writes: the file keeps its comments and order

    document = tomlkit.parse(path.read_text()) if path.is_file() else tomlkit.document()
    if "version" not in document:
        document["version"] = 0.1
    environment = document.setdefault(env, tomlkit.table(is_super_table=True))
    command = environment.setdefault(COMMAND, tomlkit.table(is_super_table=True))
    parameters = command.setdefault("parameters", tomlkit.table())
    for key, value in values.items():
        parameters[key] = value
    path.write_text(tomlkit.dumps(document))


def run_guided(settings: Settings, *, is_local: bool) -> None:
    """Ask, then save the answers where the next deploy reads them."""
    env = settings.config_env or (LOCAL_ENV if is_local else DEFAULT_ENV)
    path = settings.config_file or settings.project_dir / "samconfig.toml"
    values = guided_values(settings, is_local=is_local)
    save_samconfig(path, env, values)
    console.print(f"saved to {path} [{env}.{COMMAND}.parameters]")
