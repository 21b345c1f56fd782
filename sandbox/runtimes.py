"""The Lambda runtimes a stack's functions run on locally, each seeing what it would see on AWS.

On AWS a function sees its package, its layers and what its runtime provides: boto3 and botocore
in every Python runtime; the AWS SDK for JavaScript, v2 (``aws-sdk``) in Node.js 16 and earlier,
v3 (``@aws-sdk/*``) from Node.js 18. ``prepare_runtimes`` makes, for each runtime a stack uses,
``<root>/<runtime>/launch``: a shell script that starts the engine's worker on that runtime's
interpreter with only that SDK beside it. The engine finds it through ``SANDBOX_RUNTIMES_DIR``
(``sandbox.engine_patches.runtimes``). The SDKs are installed once per user and reused.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from sandbox.cache import fill_once, is_filled
from sandbox.engine_patches.runtimes import LAUNCH_FILE, RUNTIMES_ENV
from sandbox.errors import DeployError

__all__ = [
    "LAUNCH_FILE",
    "NODE_SDK_V2",
    "NODE_SDK_V3_CLIENTS",
    "NODE_SDK_V3_VERSION",
    "RUNTIMES_ENV",
    "RUNTIMES_FOLDER",
    "Runtime",
    "deprecation_warning",
    "node_launch_script",
    "prepare_runtimes",
    "python_launch_script",
    "python_sdk_requirements",
]

# The folder of the user's cache (Settings.cache_dir) that holds the launchers and the SDKs.
RUNTIMES_FOLDER = "runtimes"

# The AWS SDK for JavaScript v3 as Node.js 18+ runtimes provide it. AWS bundles every client; a
# local copy of ~400 clients would take minutes, so these are the clients serverless sagas use
# (the engine's worker still stubs other @aws-sdk/client-* it can route). All v3 packages are
# released together under one version: pinned, so every machine runs the same SDK.
NODE_SDK_V3_VERSION = "3.1178.0"
NODE_SDK_V3_CLIENTS = (
    "@aws-sdk/client-dynamodb",
    "@aws-sdk/lib-dynamodb",
    "@aws-sdk/client-sfn",
    "@aws-sdk/client-sns",
    "@aws-sdk/client-sqs",
    "@aws-sdk/client-eventbridge",
    "@aws-sdk/client-s3",
    "@aws-sdk/client-lambda",
    "@aws-sdk/client-ssm",
    "@aws-sdk/client-secrets-manager",
    "@aws-sdk/client-sts",
)
# The AWS SDK for JavaScript v2 of Node.js 16 and earlier (its last release).
NODE_SDK_V2 = "aws-sdk@2.1693.0"
_FIRST_NODE_WITH_SDK_V3 = 18

# AWS's lifecycle of the Python and Node.js runtimes (the "Lambda runtimes" page, as cfn-lint
# 1.58 ships it): runtime -> (deprecated, new functions refused from).
_LIFECYCLE: dict[str, tuple[str, str]] = {
    "python2.7": ("2021-07-15", "2021-07-15"),
    "python3.6": ("2022-07-18", "2022-07-18"),
    "python3.7": ("2023-12-04", "2024-01-09"),
    "python3.8": ("2024-10-14", "2027-02-01"),
    "python3.9": ("2025-12-15", "2027-02-01"),
    "python3.10": ("2026-10-31", "2027-02-01"),
    "python3.11": ("2027-06-30", "2027-07-31"),
    "python3.12": ("2028-10-31", "2028-11-30"),
    "python3.13": ("2029-06-30", "2029-07-31"),
    "python3.14": ("2029-06-30", "2029-07-31"),
    "nodejs": ("2016-08-30", "2016-09-30"),
    "nodejs4.3": ("2020-03-05", "2020-02-03"),
    "nodejs6.10": ("2019-08-12", "2019-07-12"),
    "nodejs8.10": ("2020-03-06", "2020-02-04"),
    "nodejs10.x": ("2021-07-30", "2021-07-30"),
    "nodejs12.x": ("2023-03-31", "2023-03-31"),
    "nodejs14.x": ("2023-12-04", "2024-01-09"),
    "nodejs16.x": ("2024-06-12", "2027-02-01"),
    "nodejs18.x": ("2025-09-01", "2027-02-01"),
    "nodejs20.x": ("2026-04-30", "2027-02-01"),
    "nodejs22.x": ("2027-04-30", "2027-06-01"),
    "nodejs24.x": ("2028-04-30", "2028-06-01"),
}
_SUCCESSORS = {"python": "python3.14", "nodejs": "nodejs24.x"}

_PYTHON_RUNTIME = re.compile(r"python(?P<major>\d+)\.(?P<minor>\d+)")
_NODE_RUNTIME = re.compile(r"nodejs(?:(?P<major>\d+)(?:\.(?:x|\d+))?)?")
_PROBE_CACHE = ".interpreters.json"
_INSTALL_TIMEOUT = 900.0
_PROBE_TIMEOUT = 20.0

Notify = Callable[[str], None]
Run = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Runtime:
    """A Lambda runtime as this machine runs it."""

    name: str  # "python3.12"
    interpreter: str  # the interpreter the launcher starts
    version: str  # "3.12" of that interpreter (Python) or node's major ("20")
    is_fallback: bool  # the runtime's own interpreter is not installed here
    launch: Path | None = None  # the launcher the engine starts workers with


def prepare_runtimes(
    names: Iterable[str],
    root: Path,
    notify: Notify = lambda _: None,
    *,
    run: Run = subprocess.run,
    today: datetime.date | None = None,
) -> dict[str, Runtime]:
    """Make ``root/<runtime>/launch`` for each Python and Node.js runtime in ``names``.

    Once a runtime's SDK is installed (the first time only: pip or npm reaches the package
    index), preparing it again installs nothing. Other runtime families are left to the engine.
    DeployError when pip or npm fails.
    """
    today = today or datetime.date.today()
    prepared: dict[str, Runtime] = {}
    interpreters = _Interpreters(root / _PROBE_CACHE, run)
    for name in sorted({name for name in names if name}):
        python = _PYTHON_RUNTIME.fullmatch(name)
        node = _NODE_RUNTIME.fullmatch(name)
        if python is None and node is None:
            continue
        warning = deprecation_warning(name, today)
        if warning:
            notify(warning)
        if python is not None:
            prepared[name] = _prepare_python(
                name, f"{python['major']}.{python['minor']}", root, interpreters, notify, run
            )
        else:
            assert node is not None
            runtime = _prepare_node(name, int(node["major"] or 0), root, interpreters, notify, run)
            if runtime is not None:
                prepared[name] = runtime
    interpreters.save()
    return prepared


def deprecation_warning(name: str, today: datetime.date) -> str | None:
    """One line when AWS has deprecated ``name`` or refuses new functions on it; None otherwise."""
    if name not in _LIFECYCLE:
        return None
    deprecated, refused = (datetime.date.fromisoformat(day) for day in _LIFECYCLE[name])
    successor = _SUCCESSORS["python" if name.startswith("python") else "nodejs"]
    if refused <= today:
        return (
            f"AWS Lambda refuses new {name} functions since {refused}: it runs here, but move to {successor}"
        )
    if deprecated <= today:
        return (
            f"{name} is deprecated on AWS Lambda since {deprecated} and refused for new functions "
            f"from {refused}: move to {successor}"
        )
    return None


def python_sdk_requirements() -> list[str]:
    """boto3 and botocore as this venv has them, or the newest an older Python can install.

    The venv's versions are the ones the sandbox itself is tested with (AWS moves its runtimes'
    boto3 forward too); ``<=`` lets pip pick an older release for an interpreter those versions
    no longer support (Python 3.8), from the packages' own Requires-Python.
    """
    requirements = []
    for package in ("boto3", "botocore"):
        try:
            requirements.append(f"{package}<={installed_version(package)}")
        except PackageNotFoundError:
            requirements.append(package)
    return requirements


def python_launch_script(name: str, interpreter: str, sdk: Path) -> str:
    """The launcher of a Python runtime: no site-packages (``-S``), only the runtime's boto3."""
    return (
        "#!/bin/sh\n"
        f"# {name} as AWS Lambda runs it: the function's package and layers (the worker puts them\n"
        "# on sys.path), the runtime's boto3 and botocore, the standard library; no site-packages.\n"
        "unset PYTHONHOME PYTHONSTARTUP\n"
        f"PYTHONPATH={shlex.quote(str(sdk))}\n"
        "export PYTHONPATH\n"
        # Workers of the same code share one unpacked copy (engine_patches.unpacking): the
        # bytecode the first compiles there serves the next.
        "unset PYTHONDONTWRITEBYTECODE\n"
        f'exec {shlex.quote(interpreter)} -S "$@"\n'
    )


def node_launch_script(name: str, node: str, sdk: Path | None) -> str:
    """The launcher of a Node.js runtime: the runtime's AWS SDK after the layers' NODE_PATH."""
    lines = [
        "#!/bin/sh",
        f"# {name} as AWS Lambda runs it: the runtime's AWS SDK after the function's layers.",
    ]
    if sdk is not None:
        modules = shlex.quote(str(sdk / "node_modules"))
        lines += [
            f'NODE_PATH="${{NODE_PATH:+$NODE_PATH:}}"{modules}',
            "export NODE_PATH",
            # ES modules ignore NODE_PATH: they find packages in a node_modules folder above the
            # handler. The worker's folder holds the code folder, so the SDK linked there comes
            # after the function's own node_modules and its layers', as on AWS.
            f'[ -f "$1" ] && ln -sfn {modules} "$(dirname "$1")/node_modules" 2>/dev/null',
        ]
    lines.append(f'exec {shlex.quote(node)} "$@"')
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ Python


def _prepare_python(
    name: str, wanted: str, root: Path, interpreters: _Interpreters, notify: Notify, run: Run
) -> Runtime:
    engine_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = interpreters.python(wanted) if wanted.startswith("3.") else None
    if found is None and wanted == engine_version:
        found = sys.executable
    is_fallback = found is None
    interpreter, version = (sys.executable, engine_version) if found is None else (found, wanted)
    if is_fallback:
        notify(f"{name} is not installed here: functions on {name} run on Python {version}")
    requirements = python_sdk_requirements()
    sdk = root / "sdk" / f"python{version}-{_key(version, *requirements)}"
    if not is_filled(sdk):
        _install(
            sdk,
            lambda staging: _python_sdk_commands(staging, version, interpreter, requirements),
            what=f"boto3 for the {name} runtime",
            run=run,
            optional_last=True,
        )
    launch = _write_launch(root / name / LAUNCH_FILE, python_launch_script(name, interpreter, sdk))
    return Runtime(name, interpreter, version, is_fallback, launch)


def _python_sdk_commands(
    staging: Path, version: str, interpreter: str, requirements: list[str]
) -> list[list[str]]:
    pip = [sys.executable, "-m", "pip", "install", "--target", str(staging), "--python-version", version]
    return [
        [
            *pip,
            "--only-binary=:all:",
            "--no-compile",
            "--disable-pip-version-check",
            "--quiet",
            *requirements,
        ],
        # Compiled now, by the interpreter that runs them: every cold start reads them.
        [interpreter, "-S", "-m", "compileall", "-q", "-j", "0", str(staging)],
    ]


# ------------------------------------------------------------------------------ Node.js

_NPM_OPTIONS = ("--no-audit", "--no-fund", "--omit=dev", "--loglevel=error")


def _prepare_node(
    name: str, major: int, root: Path, interpreters: _Interpreters, notify: Notify, run: Run
) -> Runtime | None:
    found = interpreters.node()
    launch_path = root / name / LAUNCH_FILE
    if found is None:
        launch_path.unlink(missing_ok=True)  # a launcher left from when node was here
        notify(
            f"{name} functions cannot run: node is not installed here (install Node.js {major or ''})".rstrip()
        )
        return None
    node, version = found
    if str(major) != version:
        notify(f"{name} is not installed here: functions on {name} run on Node.js {version}")
    if major >= _FIRST_NODE_WITH_SDK_V3:
        generation, packages = "v3", [f"{client}@{NODE_SDK_V3_VERSION}" for client in NODE_SDK_V3_CLIENTS]
    else:
        generation, packages = "v2", [NODE_SDK_V2]
    npm = shutil.which("npm")
    sdk = root / "sdk" / f"node-{generation}-{_key(*packages)}"
    has_sdk = is_filled(sdk)
    if not has_sdk and npm is None:
        notify(f"npm is not installed here: {name} functions run without the AWS SDK their runtime provides")
    elif not has_sdk:
        _install(
            sdk,
            lambda staging: [[str(npm), "install", "--prefix", str(staging), *_NPM_OPTIONS, *packages]],
            what=f"the AWS SDK for JavaScript {generation} for the {name} runtime",
            run=run,
        )
        has_sdk = True
    launch = _write_launch(launch_path, node_launch_script(name, node, sdk if has_sdk else None))
    return Runtime(name, node, version, str(major) != version, launch)


# ------------------------------------------------------------------------------ shared


def _key(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


def _install(
    target: Path,
    commands: Callable[[Path], list[list[str]]],
    *,
    what: str,
    run: Run,
    optional_last: bool = False,
) -> None:
    """Fill ``target`` once (sandbox.cache) by running ``commands`` in its staging folder."""

    def fill(staging: Path) -> str:
        steps = commands(staging)
        for index, command in enumerate(steps):
            try:
                result = run(command, capture_output=True, text=True, check=False, timeout=_INSTALL_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired) as error:
                raise DeployError(f"could not install {what}: {error}", hint=_INSTALL_HINT) from error
            if result.returncode != 0 and not (optional_last and index == len(steps) - 1):
                output = (result.stderr or "").strip() or (result.stdout or "").strip()
                raise DeployError(
                    f"could not install {what} ({Path(command[0]).name} exited with {result.returncode})",
                    hint=_INSTALL_HINT,
                    details="\n".join(output.splitlines()[-8:]),
                )
        return "\n".join(" ".join(command) for command in steps) + "\n"

    fill_once(target, fill)


_INSTALL_HINT = (
    "the first run needs the package index (once per runtime; it is cached after); see the output below"
)


def _write_launch(path: Path, content: str) -> Path:
    """Write an executable launcher, replacing the file atomically; unchanged ones are left alone."""
    try:
        if path.read_text() == content and os.access(path, os.X_OK):
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(content)
    os.chmod(file.name, 0o755)
    os.replace(file.name, path)
    return path


class _Interpreters:
    """Finds interpreters; what each answered is remembered per file, so a second run probes none."""

    def __init__(self, cache: Path, run: Run):
        self.cache = cache
        self.run = run
        try:
            loaded = json.loads(cache.read_text())
        except (OSError, ValueError):
            loaded = {}
        self.known: dict[str, list[Any]] = loaded if isinstance(loaded, dict) else {}
        self.changed = False

    def python(self, version: str) -> str | None:
        """An interpreter of Python ``version`` on PATH, else one pyenv installed, else None."""
        candidates = []
        on_path = shutil.which(f"python{version}")
        # A version manager's shim answers per the user's selection, not per file: its versions
        # are looked at directly below instead.
        if on_path and Path(on_path).parent.name != "shims":
            candidates.append(on_path)
        pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
        installed = sorted(pyenv.glob(f"{version}.*/bin/python{version}"), key=_version_key, reverse=True)
        candidates += [str(path) for path in installed]
        probe = "import sys; print('%d.%d' % sys.version_info[:2])"
        for candidate in candidates:
            if self._answer(candidate, [candidate, "-S", "-c", probe]) == version:
                return candidate
        return None

    def node(self) -> tuple[str, str] | None:
        """node on PATH and its major version, or None."""
        node = shutil.which("node")
        if node is None:
            return None
        answer = self._answer(node, [node, "--version"])  # "v20.20.2"
        match = re.fullmatch(r"v(\d+)\..*", answer or "")
        return (node, match.group(1)) if match else None

    def _answer(self, path: str, command: list[str]) -> str | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        stamp = [stat.st_mtime_ns, stat.st_size]
        known = self.known.get(path)
        if isinstance(known, list) and len(known) == 3 and known[:2] == stamp:
            return known[2] if isinstance(known[2], str) else None
        try:
            result = self.run(command, capture_output=True, text=True, check=False, timeout=_PROBE_TIMEOUT)
            answer = result.stdout.strip() if result.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            answer = None
        self.known[path] = [*stamp, answer]
        self.changed = True
        return answer

    def save(self) -> None:
        if not self.changed:
            return
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.cache.parent, prefix=".probe.", delete=False) as file:
            json.dump(self.known, file)
        os.replace(file.name, self.cache)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in path.parent.parent.name.split("."))
