"""Packaging: templates read as CloudFormation reads them, artifacts built as sam build builds them."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.errors import DeployError
from sandbox.packaging import content_key, function_runtimes, load_template, package_template
from tests.files import names_in, write


class FakePip:
    """Stands in for pip: writes one package into --target, and counts its runs."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        write(Path(command[command.index("--target") + 1]), {"pydantic/__init__.py": ""})
        return subprocess.CompletedProcess(command, 0, "", "")


class Packaged:
    """One package_template run on a template: the result and what was uploaded."""

    def __init__(self, template: dict[str, Any], project_dir: Path, **options: Any):
        self.uploads: dict[str, bytes] = {}
        self.upload_calls = 0
        self.pip = FakePip()

        def upload(key: str, content: bytes) -> None:
            self.upload_calls += 1
            self.uploads[key] = content

        options.setdefault("cache_dir", project_dir / ".cache")
        self.template = package_template(template, project_dir, "bucket", upload, run=self.pip, **options)

    def properties(self, logical_id: str) -> dict[str, Any]:
        return dict(self.template["Resources"][logical_id]["Properties"])

    def zip_of(self, uri: str) -> list[str]:
        return names_in(self.uploads[uri.removeprefix("s3://bucket/")])


def sam(resources: dict[str, Any], **globals_function: Any) -> dict[str, Any]:
    template: dict[str, Any] = {"Transform": "AWS::Serverless-2016-10-31", "Resources": resources}
    if globals_function:
        template["Globals"] = {"Function": globals_function}
    return template


def function(**properties: Any) -> dict[str, Any]:
    return {"Type": "AWS::Serverless::Function", "Properties": properties}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A standard SAM project: payments/ with its requirements, shipping/, a python/ layer."""
    return write(tmp_path, {
        "payments/charge.py": "def lambda_handler(event, context):\n    return 1\n",
        "payments/refund.py": "def lambda_handler(event, context):\n    return 2\n",
        "payments/requirements.txt": "pydantic==2.13.5\n",
        "shipping/ship.py": "def lambda_handler(event, context):\n    return 3\n",
        "layers/helpers/python/helpers.py": "X = 1\n",
        "layers/built/helpers2.py": "Y = 1\n",
        "layers/built/requirements.txt": "pydantic\n",
        "saga.asl.json": '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}',
        "api.yaml": "openapi: 3.0.1\n",
    })  # fmt: skip


# ---------------------------------------------------------------- reading templates


def test_unquoted_dates_stay_strings_as_cloudformation_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        "AWSTemplateFormatVersion: 2010-09-09\n"
        "Resources:\n  P:\n    Type: AWS::IAM::ManagedPolicy\n    Properties:\n"
        "      PolicyDocument: {Version: 2012-10-17, Statement: []}\n"
        "      Arn: !GetAtt Fn.Arn\n      Name: !Sub '${AWS::StackName}-p'\n      Count: 3\n"
    )
    template = load_template(path)
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    properties = template["Resources"]["P"]["Properties"]
    assert properties["PolicyDocument"]["Version"] == "2012-10-17"
    assert properties["Arn"] == {"Fn::GetAtt": ["Fn", "Arn"]}
    assert properties["Name"] == {"Fn::Sub": "${AWS::StackName}-p"}
    assert properties["Count"] == 3
    # AND PyYAML's shared loader is left as other code expects it
    assert not isinstance(yaml.safe_load("d: 2010-09-09")["d"], str)


def test_load_template_expands_short_form_intrinsics(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["INVENTORY_TABLE"] == {"Ref": "InventoryTable"}


def test_a_json_template_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "template.json"
    path.write_text('{\n\t"AWSTemplateFormatVersion": "2010-09-09", "Resources": {}}')
    assert load_template(path)["Resources"] == {}


def test_load_template_errors_are_one_line_deploy_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="template not found"):
        load_template(tmp_path / "template.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("Resources: [unclosed\n")
    with pytest.raises(DeployError, match=r"broken\.yaml is not valid YAML") as caught:
        load_template(broken)
    assert "\n" not in str(caught.value)
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(DeployError, match=r"list\.yaml is not a template"):
        load_template(tmp_path / "list.yaml")


def test_function_runtimes_apply_globals() -> None:
    template = sam(
        {
            "Inherits": function(CodeUri="a/"),
            "Own": function(CodeUri="a/", Runtime="nodejs20.x"),
            "Plain": {"Type": "AWS::Lambda::Function", "Properties": {"Runtime": "python3.13"}},
            "Image": function(PackageType="Image", ImageUri="x"),
            "Table": {"Type": "AWS::DynamoDB::Table"},
        },
        Runtime="python3.12",
    )
    template["Resources"]["Image"]["Properties"]["Runtime"] = None
    assert function_runtimes(template) == {
        "Inherits": "python3.12",
        "Own": "nodejs20.x",
        "Plain": "python3.13",
    }


# ---------------------------------------------------------------- functions


def test_a_function_zip_holds_its_code_uri_contents_at_the_root_and_its_requirements(project: Path) -> None:
    # GIVEN CodeUri: payments/ and Handler: charge.lambda_handler, as sam init writes them
    template = sam({"Charge": function(CodeUri="payments/", Handler="charge.lambda_handler")},
                   Runtime="python3.12")  # fmt: skip
    packaged = Packaged(template, project)
    uri = packaged.properties("Charge")["CodeUri"]
    # THEN the zip has charge.py at its root and pydantic beside it
    assert uri.startswith("s3://bucket/functions/payments-") and uri.endswith(".zip")
    assert {"charge.py", "refund.py", "requirements.txt", "pydantic/__init__.py"} <= set(packaged.zip_of(uri))
    assert not [name for name in packaged.zip_of(uri) if name.startswith(("payments/", ".cache"))]


def test_a_second_package_installs_nothing(project: Path) -> None:
    template = sam({"Charge": function(CodeUri="payments/")}, Runtime="python3.12")
    first = Packaged(template, project)
    second = Packaged(template, project)
    assert len(first.pip.calls) == 1 and second.pip.calls == []
    assert first.uploads == second.uploads


def test_functions_sharing_code_build_once_and_upload_once(project: Path) -> None:
    template = sam({
        "Charge": function(CodeUri="payments/", Handler="charge.lambda_handler"),
        "Refund": function(CodeUri="payments", Handler="refund.lambda_handler"),
        "Ship": function(CodeUri="shipping/", Handler="ship.lambda_handler"),
    }, Runtime="python3.12")  # fmt: skip
    packaged = Packaged(template, project)
    assert packaged.properties("Charge")["CodeUri"] == packaged.properties("Refund")["CodeUri"]
    assert packaged.properties("Ship")["CodeUri"] != packaged.properties("Charge")["CodeUri"]
    assert len(packaged.pip.calls) == 1
    assert packaged.upload_calls == len(packaged.uploads) == 2
    assert packaged.zip_of(packaged.properties("Ship")["CodeUri"]) == ["ship.py"]


def test_code_uri_handler_runtime_and_architectures_inherit_from_globals(project: Path) -> None:
    template = sam({"Charge": function()}, Runtime="python3.12", CodeUri="payments/",
                   Handler="charge.lambda_handler", Architectures=["arm64"])  # fmt: skip
    packaged = Packaged(template, project)
    assert "charge.py" in packaged.zip_of(packaged.properties("Charge")["CodeUri"])
    assert "manylinux2014_aarch64" in packaged.pip.calls[0] and "3.12" in packaged.pip.calls[0]
    # AND the local Globals CodeUri is gone: each function names its upload
    assert "CodeUri" not in packaged.template["Globals"]["Function"]


def test_the_python_version_and_architecture_can_be_chosen_for_where_it_runs(project: Path) -> None:
    template = sam({"Charge": function(CodeUri="payments/", Architectures=["arm64"])}, Runtime="python3.12")
    packaged = Packaged(template, project, python_version_for=lambda runtime: "3.11", architecture="x86_64")
    flags = " ".join(packaged.pip.calls[0])
    assert "--python-version 3.11" in flags and "manylinux2014_x86_64" in flags


def test_what_is_not_local_passes_through_unchanged(project: Path) -> None:
    template = sam({
        "Inline": function(InlineCode="def h(e, c): pass", Handler="index.h"),
        "Uploaded": function(CodeUri="s3://other/fn.zip"),
        "Located": function(CodeUri={"Bucket": "b", "Key": "k"}),
    }, Runtime="python3.12", CodeUri="payments/")  # fmt: skip
    original = copy.deepcopy(template)
    packaged = Packaged(template, project)
    assert template == original  # the input is not mutated
    for logical_id in ("Inline", "Uploaded", "Located"):
        assert packaged.properties(logical_id) == original["Resources"][logical_id]["Properties"]
    assert packaged.uploads == {}


def test_a_ready_zip_is_uploaded_as_it_is(project: Path) -> None:
    (project / "dist.zip").write_bytes(b"PK-a-zip")
    packaged = Packaged(sam({"Fn": function(CodeUri="dist.zip", Runtime="java21")}), project)
    (key,) = packaged.uploads
    assert packaged.uploads[key] == b"PK-a-zip" and key.endswith(".zip")


def test_a_plain_lambda_function_is_built_too(project: Path) -> None:
    template = {"Resources": {"Fn": {"Type": "AWS::Lambda::Function",
                                     "Properties": {"Code": "shipping", "Runtime": "python3.12"}}}}  # fmt: skip
    packaged = Packaged(template, project)
    code = packaged.properties("Fn")["Code"]
    assert code["S3Bucket"] == "bucket"
    assert names_in(packaged.uploads[code["S3Key"]]) == ["ship.py"]


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        (function(CodeUri="payments/", Runtime="java21"), r"Fn: runtime java21 is not built by the sandbox"),
        (function(CodeUri="payments/", Runtime="provided.al2023"), r"Fn: runtime provided\.al2023 is not built"),
        (function(CodeUri="missing/", Runtime="python3.12"), r"Fn: CodeUri missing/ does not exist"),
        (function(CodeUri="payments/"), r"Fn has no Runtime"),
        (function(PackageType="Image", ImageUri="repo:tag"), r"Fn: PackageType Image .* is not built"),
        ({**function(CodeUri="payments/", Runtime="nodejs20.x"), "Metadata": {"BuildMethod": "esbuild"}},
         r"Fn: Metadata BuildMethod esbuild is not built by the sandbox"),
        ({**function(CodeUri="payments/", Runtime="python3.12"), "Metadata": {"BuildMethod": "makefile"}},
         r"Fn: Metadata BuildMethod makefile is not built by the sandbox"),
    ],
)  # fmt: skip
def test_what_the_sandbox_cannot_build_is_one_line_naming_the_function(
    project: Path, resource: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeployError, match=message) as caught:
        Packaged(sam({"Fn": resource}), project)
    assert "\n" not in str(caught.value) and caught.value.hint


def test_a_build_method_naming_the_runtime_builds_as_usual(project: Path) -> None:
    resource = {
        **function(CodeUri="shipping/", Runtime="python3.12"),
        "Metadata": {"BuildMethod": "python3.12"},
    }
    packaged = Packaged(sam({"Fn": resource}), project)
    assert packaged.zip_of(packaged.properties("Fn")["CodeUri"]) == ["ship.py"]


# ---------------------------------------------------------------- layers and definitions


def test_a_layer_is_zipped_as_it_is_and_with_a_build_method_built_under_python(project: Path) -> None:
    template = sam({
        "Helpers": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "layers/helpers/"}},
        "Built": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "layers/built"},
                  "Metadata": {"BuildMethod": "python3.12"}},
        "Plain": {"Type": "AWS::Lambda::LayerVersion", "Properties": {"Content": "layers/helpers"}},
        "Fn": function(CodeUri="shipping/", Runtime="python3.12", Layers=[{"Ref": "Helpers"}]),
    })  # fmt: skip
    packaged = Packaged(template, project)
    helpers = packaged.properties("Helpers")["ContentUri"]
    assert helpers.startswith("s3://bucket/layers/Helpers-")
    assert packaged.zip_of(helpers) == ["python/helpers.py"]
    assert set(packaged.zip_of(packaged.properties("Built")["ContentUri"])) == {
        "python/helpers2.py", "python/requirements.txt", "python/pydantic/__init__.py"
    }  # fmt: skip
    plain = packaged.properties("Plain")["Content"]
    assert (
        names_in(packaged.uploads[plain["S3Key"]]) == ["python/helpers.py"] and plain["S3Bucket"] == "bucket"
    )
    assert packaged.properties("Fn")["Layers"] == [{"Ref": "Helpers"}]


def test_a_layer_build_method_the_sandbox_cannot_build_is_refused(project: Path) -> None:
    layer = {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "layers/built"},
             "Metadata": {"BuildMethod": "makefile"}}  # fmt: skip
    with pytest.raises(DeployError, match="Layer: Metadata BuildMethod makefile is not built"):
        Packaged(sam({"Layer": layer}), project)


def test_definitions_become_bucket_and_key(project: Path) -> None:
    template = sam({
        "Saga": {"Type": "AWS::Serverless::StateMachine", "Properties": {"DefinitionUri": "saga.asl.json"}},
        "Api": {"Type": "AWS::Serverless::Api", "Properties": {"DefinitionUri": "api.yaml"}},
        "Plain": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {"DefinitionS3Location": "saga.asl.json"}},
    })  # fmt: skip
    packaged = Packaged(template, project)
    saga = packaged.properties("Saga")["DefinitionUri"]
    assert saga["Bucket"] == "bucket" and saga["Key"].startswith("state_machines/Saga-")
    assert saga["Key"].endswith(".asl.json")
    assert packaged.uploads[saga["Key"]] == (project / "saga.asl.json").read_bytes()
    api = packaged.properties("Api")["DefinitionUri"]
    assert api["Key"].startswith("apis/Api-") and api["Key"].endswith(".yaml")
    assert packaged.properties("Plain")["DefinitionS3Location"]["Key"].startswith("state_machines/Plain-")


def test_a_missing_definition_is_a_deploy_error(tmp_path: Path) -> None:
    template = sam(
        {"Saga": {"Type": "AWS::Serverless::StateMachine", "Properties": {"DefinitionUri": "x.json"}}}
    )
    with pytest.raises(DeployError, match="Saga: definition file not found"):
        Packaged(template, tmp_path)


def test_content_key_shape() -> None:
    key = content_key("functions", "payments", b"abc", ".zip")
    assert key.startswith("functions/payments-") and key.endswith(".zip")
    assert len(key.removeprefix("functions/payments-").removesuffix(".zip")) == 16


# ---------------------------------------------------------------- the demo, built the same way


def test_the_demos_seven_functions_share_one_build_of_services(
    template: dict[str, Any], project_dir: Path, tmp_path: Path
) -> None:
    packaged = Packaged(template, project_dir, cache_dir=tmp_path / "cache")
    functions = {lid: r for lid, r in packaged.template["Resources"].items()
                 if r["Type"] == "AWS::Serverless::Function"}  # fmt: skip
    assert len(functions) == 7
    (uri,) = {r["Properties"]["CodeUri"] for r in functions.values()}
    names = packaged.zip_of(uri)
    # Each Handler (order_api.handler.lambda_handler, ...) and the shared package import from the root.
    for resource in functions.values():
        module = resource["Properties"]["Handler"].rsplit(".", 1)[0]
        assert f"{module.replace('.', '/')}.py" in names
    assert "shared/steps.py" in names and "pydantic/__init__.py" in names
    assert "shared/faults.py" not in names  # the business code alone: faults are the engine's
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    (command,) = packaged.pip.calls
    assert f"-r {project_dir / 'services' / 'requirements.txt'}" in " ".join(command)
    # AND the state machine's substitutions stay for CloudFormation to resolve
    (machine,) = [
        r for r in packaged.template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine"
    ]
    assert machine["Properties"]["DefinitionUri"]["Key"].startswith("state_machines/OrderSagaStateMachine-")
    assert "PaymentFunctionArn" in machine["Properties"]["DefinitionSubstitutions"]
    assert packaged.upload_calls == 2


def test_a_key_prefix_puts_every_upload_under_it(project: Path) -> None:
    # GIVEN samconfig's s3_prefix, as `sam deploy` applies it
    template = sam(
        {"Charge": function(CodeUri="payments/", Handler="charge.lambda_handler")}, Runtime="python3.12"
    )
    packaged = Packaged(template, project, key_prefix="trips/")
    # THEN the upload and the template's location both sit under it
    (key,) = packaged.uploads
    assert key.startswith("trips/functions/")
    assert packaged.properties("Charge")["CodeUri"] == f"s3://bucket/{key}"


def test_a_yaml_state_machine_definition_is_uploaded_as_json(project: Path) -> None:
    # GIVEN a definition written in YAML, as SAM projects write `*.asl.yaml`
    write(project, {"statemachine/saga.asl.yaml": "StartAt: Go\nStates:\n  Go: {Type: Pass, End: true}\n"})
    template = sam({"Saga": {"Type": "AWS::Serverless::StateMachine",
                             "Properties": {"DefinitionUri": "statemachine/saga.asl.yaml"}}})  # fmt: skip
    # WHEN packaged THEN Step Functions gets the same definition as JSON
    packaged = Packaged(template, project)
    location = packaged.properties("Saga")["DefinitionUri"]
    assert location["Key"].endswith(".asl.json")
    assert json.loads(packaged.uploads[location["Key"]]) == {
        "StartAt": "Go",
        "States": {"Go": {"Type": "Pass", "End": True}},
    }
