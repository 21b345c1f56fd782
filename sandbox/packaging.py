"""Packaging: function code and the state machine definition become S3 artifacts the template names."""

from __future__ import annotations

import copy
import hashlib
import io
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

from sandbox.errors import DeployError

SHARED_PACKAGE = "shared"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # zip entries carry no mtime, so equal code -> equal hash
_SKIPPED_FOLDERS = {"__pycache__", ".pytest_cache", ".mypy_cache"}

Upload = Callable[[str, bytes], None]
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}


def load_template(path: Path) -> dict[str, Any]:
    """The SAM template as a dict (short-form intrinsics such as !Ref expanded)."""
    try:
        return dict(yaml_parse(path.read_text()))
    except FileNotFoundError as error:
        raise DeployError(f"template not found: {path}") from error
    except Exception as error:  # yaml's errors have no common base worth naming here
        raise DeployError(f"{path.name} is not valid YAML: {error}") from error


def _package_files(folder: Path, arc_root: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and path.suffix != ".pyc" and not _SKIPPED_FOLDERS & set(relative.parts):
            yield f"{arc_root}/{relative.as_posix()}", path


def build_function_zip(code_dir: Path, dependencies_dir: Path | None = None) -> bytes:
    """A deterministic zip of the function's package, the shared package and its dependencies."""
    if not code_dir.is_dir():
        raise DeployError(f"function code folder not found: {code_dir}")
    buffer = io.BytesIO()
    entries = list(_package_files(code_dir, code_dir.name))
    shared = code_dir.parent / SHARED_PACKAGE
    if shared.is_dir():
        entries += list(_package_files(shared, SHARED_PACKAGE))
    if dependencies_dir is not None:
        entries += [
            (name.removeprefix("./"), path)
            for name, path in _package_files(dependencies_dir, ".")
            if not name.startswith(("./.complete", "./bin/"))  # the cache marker, console scripts
        ]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def lambda_platform(template: dict[str, Any]) -> tuple[str, str]:
    """The Python version and pip platform tag the template's functions run on."""
    function = template.get("Globals", {}).get("Function", {})
    runtime = str(function.get("Runtime", ""))
    if not runtime.startswith("python3."):
        raise DeployError(f"unsupported Lambda runtime {runtime!r} in the template's Globals")
    architecture = (function.get("Architectures") or ["x86_64"])[0]
    if architecture not in PLATFORMS:
        raise DeployError(f"unsupported Lambda architecture {architecture!r}")
    return runtime.removeprefix("python"), PLATFORMS[architecture]


def build_dependencies(requirements: Path, python_version: str, platform: str, cache_dir: Path) -> Path:
    """Install the functions' requirements for the Lambda platform once; cached by content hash."""
    fingerprint = hashlib.sha256(
        requirements.read_bytes() + f"|{python_version}|{platform}".encode()
    ).hexdigest()[:16]
    target = cache_dir / f"dependencies-{fingerprint}"
    if (target / ".complete").exists():
        return target
    staging = cache_dir / f"dependencies-{fingerprint}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(staging), "--platform", platform, "--implementation", "cp",
        "--python-version", python_version, "--only-binary=:all:", "-r", str(requirements),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DeployError(
            f"could not build the functions' dependencies for Python {python_version} ({platform})",
            hint="check your network access to the package index",
            details=result.stderr.strip()[-2000:],
        )
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def content_key(prefix: str, name: str, content: bytes, suffix: str) -> str:
    """An S3 key that changes exactly when the content does."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    return f"{prefix}/{name}-{digest}{suffix}"


def package_template(
    template: dict[str, Any],
    project_dir: Path,
    bucket: str,
    upload: Upload,
    dependencies_dir: Path | None = None,
) -> dict[str, Any]:
    """The template with local CodeUri/DefinitionUri paths replaced by uploaded S3 artifacts.

    ``dependencies_dir`` goes into every function zip (AWS); the embedded engine runs the
    handlers on the project's own venv and needs none.
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
