"""Packaging: a template's local artifacts, built as `sam build` builds them, become S3 locations.

Functions (``CodeUri``/``Code``) and layers (``ContentUri``/``Content``) are built by
``sandbox.build``; state machine and API definitions are uploaded as they are, as ``sam
package`` and ``aws cloudformation package`` do.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.build import Build, Notify, Run, build_zip, is_node, is_python
from sandbox.errors import DeployError

Upload = Callable[[str, bytes], None]

FUNCTION_TYPES = {"AWS::Serverless::Function": "CodeUri", "AWS::Lambda::Function": "Code"}
_LAYER_TYPES = {"AWS::Serverless::LayerVersion": "ContentUri", "AWS::Lambda::LayerVersion": "Content"}
# Definitions uploaded as they are: resource type -> (property, name of the bucket/key fields).
_DEFINITION_TYPES = {
    "AWS::Serverless::StateMachine": ("DefinitionUri", "Bucket", "Key"),
    "AWS::Serverless::Api": ("DefinitionUri", "Bucket", "Key"),
    "AWS::Serverless::HttpApi": ("DefinitionUri", "Bucket", "Key"),
    "AWS::StepFunctions::StateMachine": ("DefinitionS3Location", "Bucket", "Key"),
}
_DEFINITION_FOLDERS = {"AWS::Serverless::Api": "apis", "AWS::Serverless::HttpApi": "apis"}
_UNBUILT_HINT = "build it with `sam build` and point {key} at .aws-sam/build/{lid} (or at a .zip)"


# ---------------------------------------------------------------- reading templates


def _template_loader() -> type[Any]:
    """PyYAML's safe loader with CloudFormation's reading: short-form intrinsics, dates as strings."""
    import yaml  # PyYAML: only where a template is read
    from samtranslator.yaml_helper import intrinsics_multi_constructor

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class TemplateLoader(base):  # type: ignore[misc]
        """A loader of its own, so PyYAML's shared SafeLoader is left as other code expects it."""

    TemplateLoader.add_multi_constructor("!", intrinsics_multi_constructor)
    # CloudFormation has no timestamp type: `AWSTemplateFormatVersion: 2010-09-09` is a string.
    TemplateLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)
    return TemplateLoader


def load_template(path: Path) -> dict[str, Any]:
    """The template as CloudFormation reads it (short-form intrinsics expanded, dates kept as text)."""
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError as error:
        raise DeployError(f"template not found: {path}") from error
    try:
        loaded = json.loads(text) if text.lstrip().startswith("{") else yaml.load(text, _template_loader())
    except (yaml.YAMLError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DeployError(f"{path.name} is not valid YAML: {first_line}", details=str(error)) from error
    if not isinstance(loaded, dict):
        raise DeployError(f"{path.name} is not a template: its top level is not a mapping")
    return loaded


_YAML_SUFFIXES = (".yaml", ".yml")


def state_machine_definition(path: Path) -> str:
    """A state machine's definition file as JSON text: Step Functions takes a YAML one (a
    ``.asl.yaml``, as SAM projects write them) through CloudFormation, but runs JSON."""
    text = path.read_text()
    if path.suffix not in _YAML_SUFFIXES:
        return text
    import yaml  # PyYAML: only where a YAML definition is read

    try:
        return json.dumps(yaml.safe_load(text), indent=2)
    except yaml.YAMLError as error:
        raise DeployError(f"{path.name} is not valid YAML: {str(error).splitlines()[0]}") from error


def function_properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's properties with SAM's Globals.Function applied (a serverless function's only)."""
    resource = template.get("Resources", {})[logical_id]
    properties = dict(resource.get("Properties") or {})
    if resource.get("Type") == "AWS::Serverless::Function":
        return {**(template.get("Globals", {}).get("Function") or {}), **properties}
    return properties


def function_runtimes(template: dict[str, Any]) -> dict[str, str]:
    """Logical id -> Runtime of every function of the template that names one (Globals applied)."""
    runtimes: dict[str, str] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if isinstance(resource, dict) and resource.get("Type") in FUNCTION_TYPES:
            runtime = function_properties(template, logical_id).get("Runtime")
            if isinstance(runtime, str):
                runtimes[logical_id] = runtime
    return runtimes


# ---------------------------------------------------------------- what each resource builds


def content_key(prefix: str, name: str, content: bytes, suffix: str) -> str:
    """An S3 key that changes exactly when the content does."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    return f"{prefix}/{name}-{digest}{suffix}"


def _is_local(value: Any) -> bool:
    return isinstance(value, str) and not value.startswith("s3://")


def function_build(
    template: dict[str, Any], logical_id: str, project_dir: Path, architecture: str | None = None
) -> Build | Path | None:
    """How a function's code is built: a Build, a ready .zip to upload, or None (nothing local).

    What the sandbox cannot build is refused in one line naming the function and the way out.
    """
    resource = template["Resources"][logical_id]
    properties = function_properties(template, logical_id)
    key = FUNCTION_TYPES[resource["Type"]]
    if properties.get("PackageType") == "Image":
        raise DeployError(
            f"{logical_id}: PackageType Image (a container image) is not built by the sandbox",
            hint="package the function as a zip (CodeUri and Handler) to run it in the sandbox",
        )
    if "InlineCode" in properties:
        return None
    code = properties.get(
        key, "." if key == "CodeUri" else None
    )  # SAM's CodeUri defaults to the template's folder
    if not isinstance(code, str) or code.startswith("s3://"):
        return None
    path = project_dir / code
    if path.is_file() and path.suffix in (".zip", ".jar"):
        return path
    if not path.is_dir():
        raise DeployError(
            f"{logical_id}: {key} {code} does not exist (paths are relative to the template's folder)",
            hint=f"create {code} or correct the function's {key}",
        )
    runtime = properties.get("Runtime")
    metadata = resource.get("Metadata") or {}
    method = metadata.get("BuildMethod")
    hint = _UNBUILT_HINT.format(key=key, lid=logical_id)
    if method is not None and method != runtime:
        raise DeployError(
            f"{logical_id}: Metadata BuildMethod {method} is not built by the sandbox", hint=hint
        )
    if not isinstance(runtime, str):
        raise DeployError(
            f"{logical_id} has no Runtime (nor one under Globals.Function)",
            hint="add Runtime: python3.x or nodejsNN.x to the function or to Globals.Function",
        )
    if not (is_python(runtime) or is_node(runtime)):
        raise DeployError(
            f"{logical_id}: runtime {runtime} is not built by the sandbox (it builds python3.x and nodejs*)",
            hint=hint,
        )
    architectures = properties.get("Architectures") or ["x86_64"]
    return Build(path.resolve(), runtime, architecture or str(architectures[0]))


def layer_build(
    template: dict[str, Any], logical_id: str, project_dir: Path, architecture: str | None = None
) -> Build | Path | None:
    """How a layer's content is built: as it is, or by runtime with ``Metadata: BuildMethod``."""
    resource = template["Resources"][logical_id]
    properties = resource.get("Properties") or {}
    key = _LAYER_TYPES[resource["Type"]]
    content = properties.get(key)
    if not isinstance(content, str) or content.startswith("s3://"):
        return None
    path = project_dir / content
    if path.is_file() and path.suffix == ".zip":
        return path
    if not path.is_dir():
        raise DeployError(
            f"{logical_id}: {key} {content} does not exist (paths are relative to the template's folder)",
            hint=f"create {content} or correct the layer's {key}",
        )
    metadata = resource.get("Metadata") or {}
    method = metadata.get("BuildMethod") if resource["Type"] == "AWS::Serverless::LayerVersion" else None
    compatible = properties.get("CompatibleArchitectures") or ["x86_64"]
    arch = architecture or str(metadata.get("BuildArchitecture") or compatible[0])
    if method is None:
        return Build(path.resolve(), "", arch)
    if isinstance(method, str) and is_python(method):
        return Build(path.resolve(), method, arch, "python/")
    if isinstance(method, str) and is_node(method):
        return Build(path.resolve(), method, arch, "nodejs/")
    raise DeployError(
        f"{logical_id}: Metadata BuildMethod {method} is not built by the sandbox (it builds python3.x and nodejs*)",
        hint=f"build the layer with `sam build` and point {key} at .aws-sam/build/{logical_id}",
    )


# ---------------------------------------------------------------- package_template


@dataclass
class _Packager:
    """One packaging run: builds each distinct zip once and uploads each key once."""

    project_dir: Path
    bucket: str
    upload: Upload
    cache_dir: Path
    python_version_for: Callable[[str], str] | None
    notify: Notify
    run: Run
    key_prefix: str = ""  # samconfig's s3_prefix: every key under it
    _built: dict[Build | Path, str] = field(default_factory=dict)  # what was built -> its S3 key
    _uploaded: set[str] = field(default_factory=set)

    def put(self, key: str, content: bytes) -> str:
        key = f"{self.key_prefix.strip('/')}/{key}" if self.key_prefix.strip("/") else key
        if key not in self._uploaded:
            self.upload(key, content)
            self._uploaded.add(key)
        return key

    def key_of(self, build: Build | Path, prefix: str, name: str) -> str:
        """The S3 key of a build's zip, building it on first use (functions sharing code share it)."""
        if build not in self._built:
            if isinstance(build, Path):
                content, suffix = build.read_bytes(), build.suffix
            else:
                version = None
                if is_python(build.runtime) and self.python_version_for is not None:
                    version = self.python_version_for(build.runtime)
                content, suffix = build_zip(build, self.cache_dir, python_version=version, run=self.run,
                                            notify=self.notify), ".zip"  # fmt: skip
            self._built[build] = self.put(content_key(prefix, name, content, suffix), content)
        return self._built[build]

    def definition_key(self, prefix: str, logical_id: str, relative: str, *, is_state_machine: bool) -> str:
        path = self.project_dir / relative
        suffix = "".join(path.suffixes) or ".json"
        try:
            if is_state_machine and path.suffix in _YAML_SUFFIXES:
                content = state_machine_definition(path).encode()
                suffix = suffix.removesuffix(path.suffix) + ".json"
            else:
                content = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError) as error:
            raise DeployError(
                f"{logical_id}: definition file not found: {path}",
                hint="correct the DefinitionUri (relative to the template's folder)",
            ) from error
        return self.put(content_key(prefix, logical_id, content, suffix), content)


def package_template(
    template: dict[str, Any],
    project_dir: Path,
    bucket: str,
    upload: Upload,
    *,
    cache_dir: Path,
    python_version_for: Callable[[str], str] | None = None,
    architecture: str | None = None,
    notify: Notify = lambda _: None,
    run: Run = subprocess.run,
    key_prefix: str = "",
) -> dict[str, Any]:
    """The template with its local artifacts built, uploaded and replaced by S3 locations.

    ``python_version_for(runtime)`` is the Python a function's dependencies are installed for
    (default: the runtime's own); ``architecture`` overrides every function's and layer's.
    ``cache_dir`` holds installs and zips between runs (Settings.cache_dir: shared by projects);
    ``key_prefix`` puts every uploaded key under a folder (samconfig's ``s3_prefix``).
    """
    packager = _Packager(project_dir, bucket, upload, cache_dir, python_version_for, notify, run, key_prefix)
    packaged = copy.deepcopy(template)
    resources: dict[str, Any] = packaged.get("Resources") or {}
    for logical_id, resource in resources.items():
        kind = resource.get("Type") if isinstance(resource, dict) else None
        properties = resource.setdefault("Properties", {}) if kind else {}
        if kind in FUNCTION_TYPES:
            build = function_build(packaged, logical_id, project_dir, architecture)
            if build is None:
                continue
            name = build.name if isinstance(build, Path) else (build.source.name or logical_id)
            key = packager.key_of(build, "functions", name)
            if kind == "AWS::Serverless::Function":
                properties["CodeUri"] = f"s3://{bucket}/{key}"
            else:
                properties["Code"] = {"S3Bucket": bucket, "S3Key": key}
        elif kind in _LAYER_TYPES:
            layer = layer_build(packaged, logical_id, project_dir, architecture)
            if layer is None:
                continue
            key = packager.key_of(layer, "layers", logical_id)
            if kind == "AWS::Serverless::LayerVersion":
                properties["ContentUri"] = f"s3://{bucket}/{key}"
            else:
                properties["Content"] = {"S3Bucket": bucket, "S3Key": key}
        elif kind in _DEFINITION_TYPES:
            prop, bucket_field, key_field = _DEFINITION_TYPES[kind]
            if _is_local(properties.get(prop)):
                folder = _DEFINITION_FOLDERS.get(kind, "state_machines")
                key = packager.definition_key(
                    folder, logical_id, properties[prop], is_state_machine=kind not in _DEFINITION_FOLDERS
                )
                properties[prop] = {bucket_field: bucket, key_field: key}
    # Every function that inherited a local Globals CodeUri now names its own upload.
    function_globals = (packaged.get("Globals") or {}).get("Function") or {}
    if _is_local(function_globals.get("CodeUri")):
        del function_globals["CodeUri"]
    return packaged
