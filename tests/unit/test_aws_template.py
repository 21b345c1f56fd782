"""The template as AWS sees it: least privilege, retained data, a protected REST API, local/AWS parity."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from sandbox.aws import API_STAGE, aws_parameters
from sandbox.packaging import package_template
from sandbox.settings import Settings
from sandbox.targets import project_parameters

# Wildcards the template may keep, each with the reason AWS leaves no narrower choice.
WILDCARD_ALLOW_LIST = {
    ("OrderApiFunctionRole", "states:DescribeExecution"): "executions are named per order at run time; "
    "the resource is scoped to this state machine's executions",
    ("OrderApiFunctionRole", "states:GetExecutionHistory"): "as above",
}
# AWS managed policies SAM attaches, and why they are acceptable.
MANAGED_POLICY_ALLOW_LIST = {
    "AWSLambdaBasicExecutionRole": "write the function's own CloudWatch logs",
    "AWSLambdaDynamoDBExecutionRole": "added by SAM for a DynamoDB stream event: read the stream",
}
BUSINESS_TABLES = ("OrdersTable", "InventoryTable", "ReservationsTable", "PaymentsTable", "ShipmentsTable")


def _offline_pip(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
    """pip, without the network: an empty install into its --target (the template is what is tested)."""
    Path(command[command.index("--target") + 1]).mkdir(parents=True, exist_ok=True)
    return subprocess.CompletedProcess(command, 0, "", "")


def render(template: dict[str, Any], project_dir: Path, bucket: str, cache_dir: Path) -> dict:
    return package_template(
        template, project_dir, bucket, lambda _key, _content: None, cache_dir=cache_dir, run=_offline_pip
    )


@pytest.fixture(scope="module")
def translated(
    template: dict[str, Any], project_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The template after the SAM transform, as CloudFormation deploys it."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    packaged = render(template, project_dir, "artifacts", tmp_path_factory.mktemp("cache"))
    return dict(transform(packaged, {}, SimpleNamespace(load=lambda: {})))


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in role["Properties"].get("Policies", []):
        found.extend(policy["PolicyDocument"]["Statement"])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def has_wildcard(resource: Any) -> bool:
    text = json.dumps(resource)
    return "*" in text


def test_no_wildcard_actions_or_resources_outside_the_allow_list(translated: dict[str, Any]) -> None:
    # GIVEN every IAM role the stack creates
    roles = {k: v for k, v in translated["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    assert len(roles) == 8  # seven functions and the state machine
    for name, role in roles.items():
        for statement in statements(role):
            # THEN no action is a wildcard
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{name}: wildcard action {action}"
            # AND no resource is, unless allow-listed with a reason
            if any(has_wildcard(resource) for resource in as_list(statement["Resource"])):
                for action in as_list(statement["Action"]):
                    assert (name, action) in WILDCARD_ALLOW_LIST, f"{name}: {action} on a wildcard resource"
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert arn.rsplit("/", 1)[-1] in MANAGED_POLICY_ALLOW_LIST, f"{name}: managed policy {arn}"


def test_state_machine_may_only_invoke_its_step_functions(translated: dict[str, Any]) -> None:
    role = translated["Resources"]["OrderSagaStateMachineRole"]
    (statement,) = statements(role)
    assert statement["Action"] == "lambda:InvokeFunction"
    invoked = {resource["Fn::GetAtt"][0] for resource in statement["Resource"]}
    assert invoked == {"InventoryFunction", "PaymentFunction", "ShippingFunction", "OrderStatusFunction"}
    assert not role["Properties"].get("ManagedPolicyArns")


def test_events_go_only_on_the_stacks_bus(translated: dict[str, Any]) -> None:
    for name, resource in translated["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for statement in statements(resource):
            if "events:PutEvents" in as_list(statement["Action"]):
                assert statement["Resource"] == {"Fn::GetAtt": ["OrdersBus", "Arn"]}, name


def test_business_tables_are_retained_with_point_in_time_recovery(template: dict[str, Any]) -> None:
    for name in BUSINESS_TABLES:
        table = template["Resources"][name]
        assert table["DeletionPolicy"] == "Retain"
        assert table["UpdateReplacePolicy"] == "Retain"
        assert table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        # CloudFormation names them, so a new stack never collides with a retained table.
        assert "TableName" not in table["Properties"]


def test_api_is_iam_protected_by_default(template: dict[str, Any]) -> None:
    assert template["Parameters"]["ApiAuth"]["Default"] == "iam"
    methods = of_type(template, "AWS::ApiGateway::Method")
    assert len(methods) == 3
    for method in methods.values():
        assert method["Properties"]["AuthorizationType"] == {"Fn::If": ["IsApiAuthIam", "AWS_IAM", "NONE"]}
    assert aws_parameters(is_api_open=False) == {"ApiAuth": "iam"}
    assert aws_parameters(is_api_open=True) == {"ApiAuth": "none"}


def test_what_deploys_has_no_fault_switch(template: dict[str, Any]) -> None:
    # Faults are injected by the local engine at the invoke boundary: nothing in the template turns
    # them on, and no function is told about them
    assert not [name for name in template["Parameters"] if "fault" in name.lower()]
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    functions = of_type(template, "AWS::Serverless::Function").values()
    for variables in [
        environment,
        *(f["Properties"].get("Environment", {}).get("Variables", {}) for f in functions),
    ]:
        assert not [name for name in variables if "FAULT" in name.upper()]


def test_no_service_source_names_a_fault(project_dir: Path) -> None:
    # GIVEN every source file of the demo's functions WHEN searched for a fault or an injection
    # ("default" and Powertools' inject_lambda_context are not) THEN none names either
    pattern = re.compile(r"(?<!de)fault|inject(?!_lambda_context)", re.IGNORECASE)
    sources = sorted((project_dir / "services").rglob("*.py"))
    assert sources
    found = [f"{path.relative_to(project_dir)}:{number}: {line.strip()}"
             for path in sources for number, line in enumerate(path.read_text().splitlines(), 1)
             if pattern.search(line)]  # fmt: skip
    assert found == []


def of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: resource for name, resource in template["Resources"].items() if resource["Type"] == kind}


def test_the_order_api_is_a_rest_api_of_three_lambda_proxy_methods(template: dict[str, Any]) -> None:
    # GIVEN the API's resources and methods (a REST API: every engine and AWS serve it)
    assert set(of_type(template, "AWS::ApiGateway::RestApi")) == {"OrdersApi"}
    assert not [r for r in template["Resources"].values() if r["Type"].startswith("AWS::ApiGatewayV2::")]
    paths = {"OrdersResource": "/orders", "OrderResource": "/orders/{orderId}"}
    routes = {
        (method["Properties"]["HttpMethod"], paths[method["Properties"]["ResourceId"]["Ref"]])
        for method in of_type(template, "AWS::ApiGateway::Method").values()
    }
    # THEN they are the routes the handler serves, each a Lambda proxy to the order API function
    assert routes == {("POST", "/orders"), ("GET", "/orders"), ("GET", "/orders/{orderId}")}
    for method in of_type(template, "AWS::ApiGateway::Method").values():
        integration = method["Properties"]["Integration"]
        assert (integration["Type"], integration["IntegrationHttpMethod"]) == ("AWS_PROXY", "POST")
        assert "${OrderApiFunction.Arn}" in integration["Uri"]["Fn::Sub"]
    # AND the stage is the one the URL helpers put in every API URL
    (stage,) = of_type(template, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["StageName"] == API_STAGE
    assert template["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"].endswith("/${OrdersApiStage}")


def routes_digest(template: dict[str, Any]) -> str:
    """A digest of the API's resources and methods: what a deployment snapshots."""
    routes = {
        **of_type(template, "AWS::ApiGateway::Resource"),
        **of_type(template, "AWS::ApiGateway::Method"),
    }
    return hashlib.sha256(json.dumps(routes, sort_keys=True).encode()).hexdigest()[:10]


def test_each_auth_mode_has_a_deployment_named_after_the_routes(template: dict[str, Any]) -> None:
    # GIVEN the deployments (CloudFormation creates each once: a snapshot of the methods then)
    deployments = of_type(template, "AWS::ApiGateway::Deployment")
    digest = routes_digest(template)
    # THEN their names carry the digest of the routes, so a changed route is deployed anew
    expected = {f"OrdersApiDeploymentIam{digest}", f"OrdersApiDeploymentOpen{digest}"}
    assert set(deployments) == expected, f"the routes changed: rename the deployments to {sorted(expected)}"
    # AND each belongs to one ApiAuth value, snapshots every method, and the stage serves the one in force
    methods = sorted(of_type(template, "AWS::ApiGateway::Method"))
    assert {name: d["Condition"] for name, d in deployments.items()} == {
        f"OrdersApiDeploymentIam{digest}": "IsApiAuthIam",
        f"OrdersApiDeploymentOpen{digest}": "IsApiAuthOpen",
    }
    assert all(sorted(d["DependsOn"]) == methods for d in deployments.values())
    (stage,) = of_type(template, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["DeploymentId"] == {
        "Fn::If": [
            "IsApiAuthIam",
            {"Ref": f"OrdersApiDeploymentIam{digest}"},
            {"Ref": f"OrdersApiDeploymentOpen{digest}"},
        ]
    }
    assert template["Parameters"]["ApiAuth"]["AllowedValues"] == ["iam", "none"]


def _without_artifact_locations(rendered: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(rendered))
    for resource in copy["Resources"].values():
        resource.get("Properties", {}).pop("CodeUri", None)
        resource.get("Properties", {}).pop("DefinitionUri", None)
    return copy


def test_local_and_aws_renders_differ_only_in_artifacts_and_named_parameters(
    template: dict[str, Any], project_dir: Path, tmp_path: Path
) -> None:
    # GIVEN the template rendered for a local engine and for AWS
    local = render(template, project_dir, "saga-sandbox-artifacts", tmp_path)
    aws = render(template, project_dir, "saga-sandbox-artifacts-123456789012-eu-west-1", tmp_path)
    # THEN only the artifact locations differ in the templates
    assert _without_artifact_locations(local) == _without_artifact_locations(aws)
    assert local["Resources"]["InventoryFunction"]["Properties"]["CodeUri"].startswith(
        "s3://saga-sandbox-artifacts/"
    )
    # AND the parameters differ only in the named ones, all of them declared by the template
    aws_values = aws_parameters(is_api_open=False)
    local_values = project_parameters(
        Settings.load(project_dir=project_dir), template
    )  # samconfig's local env
    assert set(local_values) == set(aws_values) <= set(template["Parameters"])
    differing = {name for name in local_values if local_values[name] != aws_values[name]}
    assert differing == {"ApiAuth"}


def test_cfn_lint_passes_on_the_template_and_the_packaged_template(
    template: dict[str, Any], project_dir: Path, tmp_path: Path
) -> None:
    packaged = tmp_path / "packaged.json"
    packaged.write_text(json.dumps(render(template, project_dir, "saga-sandbox-artifacts", tmp_path)))
    for path in (project_dir / "template.yaml", packaged):
        result = subprocess.run(
            [str(Path(sys.executable).with_name("cfn-lint")), str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"{path.name}: {result.stdout}{result.stderr}"
