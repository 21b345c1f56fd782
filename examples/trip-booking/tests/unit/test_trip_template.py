"""The template as `sam build` and `sam deploy` read it: folders, layer, parameters, samconfig."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

PROJECT = Path(__file__).resolve().parents[2]


def template() -> dict[str, Any]:
    return yaml_parse((PROJECT / "template.yaml").read_text())


def functions() -> dict[str, dict[str, Any]]:
    resources = template()["Resources"]
    return {
        name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"
    }


def runtime_of(properties: dict[str, Any]) -> str:
    return properties.get("Runtime") or template()["Globals"]["Function"]["Runtime"]


def test_the_format_version_is_written_unquoted_as_real_templates_do():
    assert (PROJECT / "template.yaml").read_text().startswith("AWSTemplateFormatVersion: 2010-09-09\n")


def test_each_python_function_has_its_own_folder_with_its_handler_and_the_layer():
    python = {name: p for name, p in functions().items() if runtime_of(p).startswith("python")}
    assert len(python) == 6
    for name, properties in python.items():
        module, function = properties["Handler"].split(".")
        source = PROJECT / properties["CodeUri"] / f"{module}.py"
        assert f"def {function}(" in source.read_text(), f"{name}: {source} has no {function}"
        assert properties["Layers"] == [{"Ref": "CommonLayer"}], name
    assert len({p["CodeUri"] for p in python.values()}) == len(python)


def test_the_layer_holds_its_package_in_the_python_layout():
    layer = template()["Resources"]["CommonLayer"]["Properties"]
    assert (PROJECT / layer["ContentUri"] / "python" / "trip_common" / "ids.py").is_file()
    assert layer["CompatibleRuntimes"] == ["python3.11"]


def test_the_hotel_function_pins_its_own_powertools():
    lines = (PROJECT / "reserve_hotel" / "requirements.txt").read_text().splitlines()
    assert "aws-lambda-powertools==2.43.1" in lines


def test_the_node_function_needs_nothing_but_what_its_runtime_provides():
    notifier = functions()["TripNotifierFunction"]
    assert runtime_of(notifier).startswith("nodejs")
    package = json.loads((PROJECT / notifier["CodeUri"] / "package.json").read_text())
    assert not package.get("dependencies")
    assert (PROJECT / notifier["CodeUri"] / "index.mjs").is_file()


@pytest.mark.parametrize("env", ["default", "local"])
def test_each_samconfig_environment_gives_every_required_parameter_an_allowed_value(env):
    # GIVEN the parameters without a Default, and a samconfig environment
    parameters = template()["Parameters"]
    required = {name for name, spec in parameters.items() if "Default" not in spec}
    config = tomllib.loads((PROJECT / "samconfig.toml").read_text())
    assert config["version"] == 0.1
    overrides = config[env]["deploy"]["parameters"]["parameter_overrides"]
    # WHEN its overrides are read as SAM reads them
    values = dict(token.split("=", 1) for token in shlex.split(overrides))
    # THEN every required parameter has a value, and only declared ones are given
    assert required == {"Stage", "CardLimit"}
    assert required <= set(values) <= set(parameters)
    for name, value in values.items():
        assert value in parameters[name].get("AllowedValues", [value]), f"{env}: {name}={value}"


def test_the_notifier_records_the_event_type_of_an_sns_record():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    # GIVEN an SNS record as Lambda delivers it
    record = {
        "Sns": {
            "MessageId": "m-1",
            "Message": json.dumps({"eventType": "TRIP_BOOKED", "tripId": "trip-1", "traveller": "Ada"}),
            "MessageAttributes": {"eventType": {"Type": "String", "Value": "TRIP_BOOKED"}},
        }
    }
    script = (
        f"import {{ noticeItem }} from {json.dumps((PROJECT / 'notifier' / 'notice.mjs').as_uri())};"
        f"console.log(JSON.stringify(noticeItem({json.dumps(record)}, '2026-01-01T00:00:00.000Z')));"
    )
    # WHEN the notifier turns it into its table's item
    done = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, check=True
    )
    # THEN the item names the trip, the event type from the message attribute, and the notice
    assert json.loads(done.stdout) == {
        "tripId": {"S": "trip-1"},
        "status": {"S": "NOTIFIED"},
        "eventType": {"S": "TRIP_BOOKED"},
        "traveller": {"S": "Ada"},
        "messageId": {"S": "m-1"},
        "notifiedAt": {"S": "2026-01-01T00:00:00.000Z"},
    }


def test_the_notifier_handler_parses_as_an_es_module():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    subprocess.run([node, "--check", str(PROJECT / "notifier" / "index.mjs")], check=True)
