"""Packaging: function code and the state machine definition become S3 artifacts the template names."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sandbox.errors import DeployError

SHARED_PACKAGE = "shared"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # zip entries carry no mtime, so equal code -> equal hash
_SKIPPED_FOLDERS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
# pip's console scripts and our completion marker are not part of a function's package.
_SKIPPED_DEPENDENCY_ROOTS = {"bin", ".complete"}
_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
Upload = Callable[[str, bytes], None]


def load_template(path: Path) -> dict[str, Any]:
    """The SAM template as a dict (short-form intrinsics such as !Ref expanded)."""
    try:
        from samtranslator.yaml_helper import yaml_parse  # PyYAML: only where a template is read

        return dict(yaml_parse(path.read_text()))
    except FileNotFoundError as error:
        raise DeployError(f"template not found: {path}") from error
    except Exception as error:  # yaml's errors have no common base worth naming here
        raise DeployError(f"{path.name} is not valid YAML: {error}") from error


def _package_files(folder: Path, arc_root: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and path.suffix != ".pyc" and not _SKIPPED_FOLDERS & set(relative.parts):
            yield f"{arc_root}/{relative.as_posix()}" if arc_root else relative.as_posix(), path


def build_function_zip(code_dir: Path, dependencies_dir: Path | None = None) -> bytes:
    """A deterministic zip of the function's package plus the shared package beside it.

    With ``dependencies_dir`` (see ``build_dependencies``), its packages go at the zip's root,
    where a Lambda runtime imports them from. Such zips take a while to compress, so they are
    kept beside the dependency build, keyed by a hash of the function's code.
    """
    if not code_dir.is_dir():
        raise DeployError(f"function code folder not found: {code_dir}")
    entries = list(_package_files(code_dir, code_dir.name))
    shared = code_dir.parent / SHARED_PACKAGE
    if shared.is_dir():
        entries += list(_package_files(shared, SHARED_PACKAGE))
    if dependencies_dir is None:
        return _zip(entries)
    digest = hashlib.sha256()
    for name, path in entries:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    cached = dependencies_dir.with_name(f"{dependencies_dir.name}-zips") / f"{digest.hexdigest()[:24]}.zip"
    if cached.is_file():
        return cached.read_bytes()
    entries += [
        (name, path)
        for name, path in _package_files(dependencies_dir, "")
        if name.split("/", 1)[0] not in _SKIPPED_DEPENDENCY_ROOTS
    ]
    content = _zip(entries)
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.with_suffix(f".{os.getpid()}.tmp")
    staging.write_bytes(content)
    staging.replace(cached)
    return content


def _zip(entries: list[tuple[str, Path]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def content_key(prefix: str, name: str, content: bytes, suffix: str) -> str:
    """An S3 key that changes exactly when the content does."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    return f"{prefix}/{name}-{digest}{suffix}"


def lambda_platform(template: dict[str, Any]) -> tuple[str, str]:
    """The Python version and pip platform tag the template's functions run on (Globals)."""
    function = template.get("Globals", {}).get("Function", {})
    runtime = str(function.get("Runtime", ""))
    architectures = function.get("Architectures") or ["x86_64"]
    if not runtime.startswith("python3.") or len(architectures) != 1:
        raise DeployError(
            f"cannot tell the functions' platform from Globals.Function (Runtime {runtime!r}, "
            f"Architectures {architectures!r})",
            hint="set one pythonX.Y Runtime and one architecture under Globals.Function",
        )
    try:
        platform = _PLATFORMS[architectures[0]]
    except KeyError as error:
        raise DeployError(f"unknown Lambda architecture {architectures[0]!r}") from error
    return runtime.removeprefix("python"), platform


def dependencies_key(requirements: Path, python_version: str, platform: str) -> str:
    """What a dependency build depends on, as a short hash (the cache key)."""
    digest = hashlib.sha256()
    for part in (requirements.read_bytes(), python_version.encode(), platform.encode()):
        digest.update(part + b"\0")
    return digest.hexdigest()[:16]


def pip_install_command(target: Path, requirements: Path, python_version: str, platform: str) -> list[str]:
    """pip, installing wheels built for the Lambda platform (never this machine's) into ``target``."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--platform",
        platform,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "-r",
        str(requirements),
    ]


def build_dependencies(
    requirements: Path,
    python_version: str,
    platform: str,
    cache_dir: Path,
    *,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> Path:
    """A folder holding ``requirements`` built for a Lambda platform; cached by content hash.

    For engines whose Lambdas run in real Lambda runtimes (LocalStack, AWS): the functions do
    not see this project's venv there, so each zip must carry its dependencies.
    """
    if not requirements.is_file():
        raise DeployError(f"requirements file not found: {requirements}")
    target = (
        cache_dir
        / f"dependencies-py{python_version}-{platform}-{dependencies_key(requirements, python_version, platform)}"
    )
    if (target / ".complete").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{target.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    result = run(
        pip_install_command(staging, requirements, python_version, platform),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        details = "\n".join((result.stderr or result.stdout or "").strip().splitlines()[-8:])
        raise DeployError(
            f"could not build the functions' dependencies for Python {python_version} on {platform}",
            hint=f"pip needs to reach the package index for {requirements.name}; see pip's message below",
            details=details,
        )
    (staging / ".complete").write_text(requirements.read_text())
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def package_template(
    template: dict[str, Any],
    project_dir: Path,
    bucket: str,
    upload: Upload,
    *,
    dependencies_dir: Path | None = None,
) -> dict[str, Any]:
    """The template with local CodeUri/DefinitionUri paths replaced by uploaded S3 artifacts.

    ``dependencies_dir`` (from ``build_dependencies``) is added to every function's zip; leave
    it out for engines that run the handlers on an interpreter that has them already.
    """
    packaged = copy.deepcopy(template)
    for logical_id, resource in packaged.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function" and isinstance(properties.get("CodeUri"), str):
            if properties["CodeUri"].startswith("s3://"):
                continue
            content = build_function_zip(project_dir / properties["CodeUri"], dependencies_dir)
            key = content_key("functions", logical_id, content, ".zip")
            upload(key, content)
            properties["CodeUri"] = f"s3://{bucket}/{key}"
        elif kind == "AWS::Serverless::StateMachine" and isinstance(properties.get("DefinitionUri"), str):
            path = project_dir / properties["DefinitionUri"]
            try:
                content = path.read_bytes()
            except FileNotFoundError as error:
                raise DeployError(f"state machine definition not found: {path}") from error
            key = content_key("state_machines", logical_id, content, ".asl.json")
            upload(key, content)
            properties["DefinitionUri"] = {"Bucket": bucket, "Key": key}
    return packaged
