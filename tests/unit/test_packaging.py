"""Packaging: deterministic function zips and a template that names uploaded S3 artifacts."""

from __future__ import annotations

import copy
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import DeployError
from sandbox.packaging import (
    build_dependencies,
    build_function_zip,
    content_key,
    lambda_platform,
    load_template,
    package_template,
)


def names_in(content: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.testzip() is None
        return archive.namelist()


@pytest.fixture
def services(tmp_path: Path) -> Path:
    """A small services tree with compiled-file litter in it."""
    root = tmp_path / "services"
    for relative, text in {
        "fn/__init__.py": "",
        "fn/handler.py": "def lambda_handler(event, context):\n    return event\n",
        "fn/__pycache__/handler.cpython-311.pyc": "compiled",
        "fn/stale.pyc": "compiled",
        "shared/__init__.py": "",
        "shared/faults.py": "X = 1\n",
        "shared/__pycache__/faults.cpython-311.pyc": "compiled",
        "other/handler.py": "not shipped with fn\n",
    }.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_zip_holds_the_function_and_shared_packages_only(services: Path) -> None:
    names = names_in(build_function_zip(services / "fn"))
    assert sorted(names) == ["fn/__init__.py", "fn/handler.py", "shared/__init__.py", "shared/faults.py"]


def test_zip_is_byte_for_byte_deterministic(services: Path) -> None:
    # GIVEN the same code zipped twice, the second time with newer mtimes
    first = build_function_zip(services / "fn")
    (services / "fn" / "handler.py").touch()
    second = build_function_zip(services / "fn")
    # THEN the bytes (and so the content key) are identical
    assert first == second
    assert content_key("functions", "Fn", first, ".zip") == content_key("functions", "Fn", second, ".zip")


def test_zip_changes_when_the_code_does(services: Path) -> None:
    before = build_function_zip(services / "fn")
    (services / "shared" / "faults.py").write_text("X = 2\n")
    after = build_function_zip(services / "fn")
    assert before != after
    assert content_key("functions", "Fn", before, ".zip") != content_key("functions", "Fn", after, ".zip")


def test_zip_of_a_real_function_ships_its_handler_and_the_shared_package(project_dir: Path) -> None:
    code_dir = project_dir / "services" / "inventory"
    content = build_function_zip(code_dir)
    names = names_in(content)
    assert "inventory/handler.py" in names
    assert "inventory/stock.py" in names
    assert "shared/faults.py" in names
    assert "shared/errors.py" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert content == build_function_zip(code_dir)


def test_zip_of_a_missing_folder_is_a_deploy_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="function code folder not found"):
        build_function_zip(tmp_path / "nope")


def test_content_key_shape() -> None:
    key = content_key("functions", "InventoryFunction", b"abc", ".zip")
    assert key.startswith("functions/InventoryFunction-")
    assert key.endswith(".zip")
    assert len(key.removeprefix("functions/InventoryFunction-").removesuffix(".zip")) == 16


def test_zip_skips_by_file_not_by_an_ancestor_folder_name(tmp_path: Path) -> None:
    # GIVEN a project checked out under a folder named like "tools.pycon"
    code_dir = tmp_path / "tools.pycon" / "services" / "fn"
    code_dir.mkdir(parents=True)
    (code_dir / "handler.py").write_text("X = 1\n")
    # THEN the handler is still packaged
    assert "fn/handler.py" in names_in(build_function_zip(code_dir))


# ---------------------------------------------------------------- package_template


@pytest.fixture
def packaged(template: dict[str, Any], project_dir: Path) -> tuple[dict[str, Any], dict[str, Any], list]:
    original = copy.deepcopy(template)
    uploads: list[tuple[str, bytes]] = []
    result = package_template(template, project_dir, "bucket", lambda key, body: uploads.append((key, body)))
    return original, result, uploads


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def test_every_function_code_uri_becomes_an_uploaded_zip(packaged: Any) -> None:
    _, result, uploads = packaged
    functions = resources_of(result, "AWS::Serverless::Function")
    assert len(functions) == 7
    uploaded = dict(uploads)
    for logical_id, resource in functions.items():
        uri = resource["Properties"]["CodeUri"]
        assert uri.startswith(f"s3://bucket/functions/{logical_id}-"), uri
        assert uri.endswith(".zip")
        key = uri.removeprefix("s3://bucket/")
        assert key in uploaded
        assert names_in(uploaded[key])


def test_state_machine_definition_becomes_a_bucket_and_key(packaged: Any, project_dir: Path) -> None:
    _, result, uploads = packaged
    (machine,) = resources_of(result, "AWS::Serverless::StateMachine").values()
    location = machine["Properties"]["DefinitionUri"]
    assert location["Bucket"] == "bucket"
    assert location["Key"].startswith("state_machines/OrderSagaStateMachine-")
    assert location["Key"].endswith(".asl.json")
    assert dict(uploads)[location["Key"]] == (project_dir / "state_machines/order_saga.asl.json").read_bytes()
    # AND the substitutions stay for CloudFormation to resolve
    assert set(machine["Properties"]["DefinitionSubstitutions"]) == {
        "InventoryFunctionArn",
        "PaymentFunctionArn",
        "ShippingFunctionArn",
        "OrderStatusFunctionArn",
    }


def test_upload_is_called_once_per_artifact(packaged: Any) -> None:
    _, result, uploads = packaged
    artifacts = len(resources_of(result, "AWS::Serverless::Function")) + len(
        resources_of(result, "AWS::Serverless::StateMachine")
    )
    assert len(uploads) == artifacts == 8
    assert len({key for key, _ in uploads}) == 8


def test_package_template_does_not_mutate_its_input(packaged: Any, template: dict[str, Any]) -> None:
    original, result, _ = packaged
    assert template == original
    assert template["Resources"]["InventoryFunction"]["Properties"]["CodeUri"] == "services/inventory"
    assert result is not template
    # everything but the artifact locations is unchanged
    for name, resource in original["Resources"].items():
        if resource["Type"] not in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            assert result["Resources"][name] == resource


def test_packaging_twice_gives_the_same_keys(template: dict[str, Any], project_dir: Path) -> None:
    keys: list[list[str]] = [[], []]
    for uploads in keys:
        package_template(template, project_dir, "b", lambda key, body, into=uploads: into.append(key))
    assert keys[0] == keys[1]


def test_already_uploaded_code_is_left_alone(tmp_path: Path) -> None:
    template = {
        "Resources": {
            "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "s3://other/fn.zip"}}
        }
    }
    uploads: list[str] = []
    result = package_template(template, tmp_path, "bucket", lambda key, body: uploads.append(key))
    assert result == template
    assert uploads == []


def test_missing_state_machine_definition_is_a_deploy_error(tmp_path: Path) -> None:
    template = {
        "Resources": {
            "Saga": {
                "Type": "AWS::Serverless::StateMachine",
                "Properties": {"DefinitionUri": "missing.asl.json"},
            }
        }
    }
    with pytest.raises(DeployError, match="state machine definition not found"):
        package_template(template, tmp_path, "bucket", lambda key, body: None)


def test_load_template_expands_short_form_intrinsics(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["INVENTORY_TABLE"] == {"Ref": "InventoryTable"}


def test_load_template_errors_are_deploy_errors(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="template not found"):
        load_template(tmp_path / "template.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("Resources: [unclosed\n")
    with pytest.raises(DeployError, match=r"broken\.yaml is not valid YAML"):
        load_template(broken)


# ---------------------------------------------------------------- dependencies for Lambda runtimes


def fake_pip(calls: list[list[str]], files: dict[str, str]) -> Any:
    """Stands in for `pip install --target`: writes ``files`` into the target folder."""
    import subprocess

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        target = Path(command[command.index("--target") + 1])
        for relative, text in files.items():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).write_text(text)
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


@pytest.fixture
def requirements(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("pydantic==2.13.5\n")
    return path


def test_dependencies_are_built_for_the_lambda_platform_not_this_machine(
    requirements: Path, tmp_path: Path
) -> None:
    calls: list[list[str]] = []
    folder = build_dependencies(
        requirements,
        "3.11",
        "manylinux2014_x86_64",
        tmp_path / "cache",
        run=fake_pip(calls, {"pydantic/__init__.py": ""}),
    )
    (command,) = calls
    assert command[1:4] == ["-m", "pip", "install"]
    flags = " ".join(command)
    assert "--platform manylinux2014_x86_64" in flags
    assert "--implementation cp" in flags
    assert "--python-version 3.11" in flags
    assert "--only-binary=:all:" in flags
    assert f"-r {requirements}" in flags
    assert (folder / "pydantic" / "__init__.py").is_file()
    assert "py3.11-manylinux2014_x86_64" in folder.name


def test_a_second_build_is_a_cache_hit_until_the_requirements_change(
    requirements: Path, tmp_path: Path
) -> None:
    calls: list[list[str]] = []
    run = fake_pip(calls, {"pydantic/__init__.py": ""})
    first = build_dependencies(requirements, "3.11", "manylinux2014_x86_64", tmp_path / "cache", run=run)
    again = build_dependencies(requirements, "3.11", "manylinux2014_x86_64", tmp_path / "cache", run=run)
    assert again == first
    assert len(calls) == 1
    requirements.write_text("pydantic==2.13.4\n")
    changed = build_dependencies(requirements, "3.11", "manylinux2014_x86_64", tmp_path / "cache", run=run)
    assert changed != first
    assert len(calls) == 2
    other_python = build_dependencies(
        requirements, "3.13", "manylinux2014_x86_64", tmp_path / "cache", run=run
    )
    assert other_python != changed


def test_a_failed_pip_is_a_deploy_error_with_pips_message(requirements: Path, tmp_path: Path) -> None:
    import subprocess

    def failing(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            command, 1, "", "ERROR: No matching distribution found for pydantic"
        )

    with pytest.raises(DeployError, match=r"dependencies for Python 3\.11") as caught:
        build_dependencies(requirements, "3.11", "manylinux2014_x86_64", tmp_path / "cache", run=failing)
    assert "No matching distribution" in str(caught.value.details)
    assert not list((tmp_path / "cache").iterdir())  # nothing half-built is left to be mistaken for a hit


def test_zip_with_dependencies_puts_them_at_the_root(services: Path, tmp_path: Path) -> None:
    deps = tmp_path / "deps"
    for relative in ("pydantic/__init__.py", "pydantic-2.dist-info/METADATA", "bin/some-script", ".complete"):
        (deps / relative).parent.mkdir(parents=True, exist_ok=True)
        (deps / relative).write_text("x")
    names = names_in(build_function_zip(services / "fn", deps))
    assert "pydantic/__init__.py" in names
    assert "pydantic-2.dist-info/METADATA" in names
    assert "fn/handler.py" in names and "shared/faults.py" in names
    assert not [name for name in names if name.startswith(("bin/", ".complete"))]
    assert build_function_zip(services / "fn", deps) == build_function_zip(services / "fn", deps)


def test_package_template_without_dependencies_ships_none(
    template: dict[str, Any], project_dir: Path
) -> None:
    uploads: list[tuple[str, bytes]] = []
    package_template(template, project_dir, "b", lambda key, body: uploads.append((key, body)))
    for key, body in uploads:
        if key.endswith(".zip"):
            assert not [
                name for name in names_in(body) if name.startswith(("pydantic", "aws_lambda_powertools"))
            ]


def test_package_template_with_dependencies_ships_them_in_every_function(
    template: dict[str, Any], project_dir: Path, tmp_path: Path
) -> None:
    deps = tmp_path / "deps"
    (deps / "pydantic").mkdir(parents=True)
    (deps / "pydantic" / "__init__.py").write_text("")
    uploads: list[tuple[str, bytes]] = []
    package_template(
        template, project_dir, "b", lambda key, body: uploads.append((key, body)), dependencies_dir=deps
    )
    zips = [body for key, body in uploads if key.endswith(".zip")]
    assert len(zips) == 7
    assert all("pydantic/__init__.py" in names_in(body) for body in zips)


def test_lambda_platform_comes_from_the_templates_globals(template: dict[str, Any]) -> None:
    assert lambda_platform(template) == ("3.11", "manylinux2014_x86_64")
    arm = {"Globals": {"Function": {"Runtime": "python3.13", "Architectures": ["arm64"]}}}
    assert lambda_platform(arm) == ("3.13", "manylinux2014_aarch64")
    with pytest.raises(DeployError, match="cannot tell the functions' platform"):
        lambda_platform({"Globals": {"Function": {"Runtime": "nodejs20.x"}}})


@pytest.mark.parametrize(
    ("engine", "has_dependencies"), [("embedded", False), ("ministack-docker", False), ("localstack", True)]
)
def test_only_lambda_runtime_engines_get_dependencies_in_their_zips(
    engine: str,
    has_dependencies: bool,
    template: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # MiniStack (embedded or in Docker) runs handlers on its own Python 3.11, which has them;
    # cp312 wheels in its zips would shadow them and fail to import.
    from sandbox import targets
    from sandbox.settings import Settings

    built: list[tuple[str, str]] = []

    def fake_build(requirements: Path, python_version: str, platform: str, cache_dir: Path) -> Path:
        built.append((python_version, platform))
        assert requirements.name == "requirements.txt" and cache_dir == settings.cache_dir
        return tmp_path / "deps"

    monkeypatch.setattr(targets, "build_dependencies", fake_build)
    settings = Settings.load(state_dir=tmp_path, engine=engine)
    result = targets.function_dependencies(settings, engine, template)
    assert (result is not None) == has_dependencies
    assert built == ([("3.11", "manylinux2014_x86_64")] if has_dependencies else [])


def test_zips_with_dependencies_are_reused_until_the_code_changes(services: Path, tmp_path: Path) -> None:
    # GIVEN a dependency build and a zip made with it
    deps = tmp_path / "deps"
    (deps / "pydantic").mkdir(parents=True)
    (deps / "pydantic" / "__init__.py").write_text("")
    first = build_function_zip(services / "fn", deps)
    # WHEN the same code is zipped again THEN the kept zip is returned as it was
    (cached,) = (tmp_path / "deps-zips").iterdir()
    assert build_function_zip(services / "fn", deps) == first == cached.read_bytes()
    # AND a change to the code makes a new zip
    (services / "fn" / "handler.py").write_text("X = 2\n")
    changed = build_function_zip(services / "fn", deps)
    assert changed != first
    assert len(list((tmp_path / "deps-zips").iterdir())) == 2
