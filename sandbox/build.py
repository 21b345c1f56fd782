"""Building as `sam build` builds: a code folder's contents at the zip's root, its dependencies beside them.

Python: the folder's ``requirements.txt`` installed by pip into the same root, wheels for the
Lambda platform and Python version. Node.js: the folder's ``package.json`` dependencies in its
``node_modules``. A layer built with ``Metadata: BuildMethod`` gets the same under ``python/``
or ``nodejs/``. Installs are cached by what they depend on, so a second build installs nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import platform as host
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sandbox.cache import COMPLETE_MARKER, fill_once, is_filled
from sandbox.errors import DeployError

Run = Callable[..., subprocess.CompletedProcess[str]]
Notify = Callable[[str], None]

_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # zip entries carry no mtime, so equal code -> equal bytes
_PYTHON_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
_MACHINE_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
# What sam build leaves out of a Python package (aws-lambda-builders' python_pip workflow), plus
# the folders other tools keep beside code, which no function imports.
_SKIPPED_NAMES = (
    ".aws-sam", ".chalice", ".git", ".gitignore", "*.pyc", "__pycache__", ".Python", "*.egg-info",
    "*.egg", "pip-log.txt", "pip-delete-this-directory.txt", "htmlcov", ".tox", ".nox", ".coverage",
    ".cache", ".pytest_cache", ".python-version", ".mypy_cache", ".dmypy.json", ".pyre", ".env",
    ".venv", "venv", "venv.bak", "env.bak", "ENV", "env", ".vscode", ".idea", ".ruff_cache",
    ".sandbox", ".DS_Store",
)  # fmt: skip
# A Node package's own node_modules is replaced by the installed one (sam installs afresh too).
_SKIPPED_NODE_NAMES = (*_SKIPPED_NAMES, "node_modules")
# pip's console scripts and the cache's completion marker are not part of a package.
_SKIPPED_DEPENDENCY_ROOTS = {"bin", COMPLETE_MARKER}


def is_python(runtime: str) -> bool:
    return runtime.startswith("python3")


def is_node(runtime: str) -> bool:
    return runtime.startswith("nodejs")


def machine_architecture() -> str:
    """This machine's architecture in Lambda's words (x86_64, arm64)."""
    return _MACHINE_ARCHITECTURES.get(host.machine().lower(), host.machine().lower())


def python_platform(architecture: str) -> str:
    """The pip platform tag of a Lambda architecture."""
    try:
        return _PYTHON_PLATFORMS[architecture]
    except KeyError as error:
        raise DeployError(
            f"unknown Lambda architecture {architecture!r}", hint="use x86_64 or arm64"
        ) from error


@dataclass(frozen=True)
class Build:
    """One zip to make: a source folder, how it is built, and where its files go in the zip.

    ``runtime`` is empty for content zipped as it is; ``prefix`` is ``""`` for a function (its
    folder's contents at the root), ``python/`` or ``nodejs/`` for a layer built by runtime.
    """

    source: Path
    runtime: str = ""
    architecture: str = "x86_64"
    prefix: str = ""

    @property
    def installs(self) -> str | None:
        """The manifest whose dependencies this build installs, if there is one."""
        if is_python(self.runtime) and (self.source / "requirements.txt").is_file():
            return "requirements.txt"
        if is_node(self.runtime) and (self.source / "package.json").is_file():
            return "package.json"
        return None


def _is_skipped(parts: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(part, pattern) for part in parts for pattern in patterns)


def is_skipped_path(parts: tuple[str, ...]) -> bool:
    """Whether a path inside a code folder (its parts, relative) is left out of packages."""
    return _is_skipped(parts, _SKIPPED_NAMES)


def source_files(folder: Path, patterns: tuple[str, ...] = _SKIPPED_NAMES) -> Iterator[tuple[str, Path]]:
    """(name in the zip, file) for each file of ``folder`` that belongs in a package, sorted."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not _is_skipped(relative.parts, patterns):
            yield relative.as_posix(), path


def _dependency_files(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if (
            path.is_file()
            and relative.parts[0] not in _SKIPPED_DEPENDENCY_ROOTS
            and "__pycache__" not in relative.parts
        ):
            yield relative.as_posix(), path


def zip_entries(entries: list[tuple[str, Path]]) -> bytes:
    """A deterministic zip: sorted names, fixed times, modes only as executable or not."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            # A Lambda runtime runs executables (a custom runtime's bootstrap, node_modules/.bin).
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part + b"\0")
    return digest.hexdigest()[:16]


def _failure(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((result.stderr or result.stdout or "").strip().splitlines()[-8:])


# ---------------------------------------------------------------- Python


def pip_install_command(
    target: Path, requirements: Path, python_version: str, platform: str | None
) -> list[str]:
    """pip installing into ``target``: wheels for ``platform`` and ``python_version`` when given."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-compile", "--target", str(target)]  # fmt: skip
    if platform is not None:
        command += ["--platform", platform, "--implementation", "cp", "--python-version", python_version,
                    "--only-binary=:all:"]  # fmt: skip
    return [*command, "-r", str(requirements)]


def python_dependencies_key(requirements: Path, python_version: str, platform: str) -> str:
    """What a Python dependency install depends on, as a short hash (its cache key)."""
    return _digest(requirements.read_bytes(), python_version.encode(), platform.encode())


def install_python_requirements(
    requirements: Path,
    python_version: str,
    architecture: str,
    cache_dir: Path,
    *,
    run: Run = subprocess.run,
    notify: Notify = lambda _: None,
) -> Path:
    """A folder holding ``requirements`` installed for a Lambda platform; cached by content hash.

    pip fetches wheels for the Lambda platform and Python version, whatever this machine runs.
    A project whose requirements have no such wheel (a source-only package) is installed
    natively instead when this interpreter is the one asked for, as sam build does with a
    local interpreter.
    """
    platform = python_platform(architecture)
    key = python_dependencies_key(requirements, python_version, platform)
    target = cache_dir / "python" / f"py{python_version}-{platform}-{key}"
    if is_filled(target):
        return target
    notify(f"installing {requirements} for Python {python_version} ({platform})")
    is_native = python_version == f"{sys.version_info[0]}.{sys.version_info[1]}" and (
        architecture == machine_architecture() and sys.platform == "linux"
    )

    def install(staging: Path) -> str:
        result = run(pip_install_command(staging, requirements, python_version, platform),
                     capture_output=True, text=True, check=False)  # fmt: skip
        if result.returncode != 0 and is_native:
            shutil.rmtree(staging)
            staging.mkdir()
            result = run(pip_install_command(staging, requirements, python_version, None),
                         capture_output=True, text=True, check=False)  # fmt: skip
        if result.returncode != 0:
            raise DeployError(
                f"could not install {requirements} for Python {python_version} on {platform}",
                hint="pip must reach the package index and find wheels for that platform; see pip's message below",
                details=_failure(result),
            )
        return requirements.read_text()

    return fill_once(target, install)


# ---------------------------------------------------------------- Node.js


def npm_install_command(has_lockfile: bool) -> list[str]:
    """npm installing production dependencies: exactly the lockfile's when there is one."""
    verb = ["ci"] if has_lockfile else ["install"]
    return ["npm", *verb, "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"]


_NODE_LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json")


def install_node_dependencies(
    package_dir: Path,
    runtime: str,
    architecture: str,
    cache_dir: Path,
    *,
    run: Run = subprocess.run,
    notify: Notify = lambda _: None,
) -> Path:
    """A folder whose ``node_modules`` holds ``package_dir``'s production dependencies; cached."""
    manifests = [package_dir / "package.json", *(package_dir / name for name in _NODE_LOCKFILES)]
    present = [path for path in manifests if path.is_file()]
    key = _digest(*(path.name.encode() + path.read_bytes() for path in present),
                  runtime.encode(), architecture.encode())  # fmt: skip
    target = cache_dir / "node" / f"{runtime}-{architecture}-{key}"
    if is_filled(target):
        return target
    notify(f"installing {package_dir / 'package.json'} for {runtime} ({architecture})")
    if shutil.which("npm") is None and run is subprocess.run:
        raise DeployError(
            f"{package_dir / 'package.json'} needs npm to install its dependencies, and npm is not on PATH",
            hint="install Node.js (it brings npm), then run the command again",
        )

    def install(staging: Path) -> str:
        for path in present:
            shutil.copy2(path, staging / path.name)
        result = run(npm_install_command(len(present) > 1), cwd=staging, capture_output=True, text=True,
                     check=False)  # fmt: skip
        if result.returncode != 0:
            raise DeployError(
                f"could not install the dependencies of {package_dir / 'package.json'}",
                hint="npm must reach the registry; see npm's message below",
                details=_failure(result),
            )
        for path in staging.iterdir():  # only node_modules goes into the package; the rest comes from source
            if path.is_dir() and path.name != "node_modules":
                shutil.rmtree(path)
            elif path.is_file():
                path.unlink()
        return key

    return fill_once(target, install)


# ---------------------------------------------------------------- zips


def build_zip(
    build: Build,
    cache_dir: Path,
    *,
    python_version: str | None = None,
    run: Run = subprocess.run,
    notify: Notify = lambda _: None,
) -> bytes:
    """The deterministic zip of one build; kept in the cache when it carries dependencies.

    ``python_version`` is the Python to install for (default: the runtime's own).
    """
    if not build.source.is_dir():
        raise DeployError(f"code folder not found: {build.source}")
    patterns: tuple[str, ...] = _SKIPPED_NAMES
    if is_node(build.runtime) and build.installs:
        patterns = _SKIPPED_NODE_NAMES
    elif not build.runtime:
        patterns = ()  # content zipped as it is: the user's own layout, nothing left out
    entries = [(build.prefix + name, path) for name, path in source_files(build.source, patterns)]
    manifest = build.installs
    if manifest is None:
        return zip_entries(entries)
    if is_python(build.runtime):
        version = python_version or build.runtime.removeprefix("python")
        installed = install_python_requirements(build.source / manifest, version, build.architecture,
                                                cache_dir, run=run, notify=notify)  # fmt: skip
    else:
        installed = install_node_dependencies(build.source, build.runtime, build.architecture, cache_dir,
                                              run=run, notify=notify)  # fmt: skip
    # Compressing the dependencies costs most of a build: the zip is kept, keyed by the source's
    # files and the install they were built with (its folder name is its own content key).
    digest = hashlib.sha256(f"{build.prefix}\0{installed.name}\0".encode())
    for name, path in entries:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    cached = cache_dir / "zips" / f"{digest.hexdigest()[:24]}.zip"
    if cached.is_file():
        return cached.read_bytes()
    own = {name for name, _ in entries}
    # The source wins over an installed file of the same name (sam copies the source last).
    entries += [
        (build.prefix + name, path)
        for name, path in _dependency_files(installed)
        if build.prefix + name not in own
    ]
    content = zip_entries(entries)
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.with_suffix(f".{os.getpid()}.tmp")
    staging.write_bytes(content)
    staging.replace(cached)
    return content
