"""Handlers on the session's engine see what they would see on AWS: their package, their runtime's SDK.

The functions here are this module's own (created with boto3), on runtimes the demo does not use,
so preparing them changes nothing for the other tests' functions. The first run installs the
runtimes' SDKs (pip, npm: the package index, once per user); later runs reuse them.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sandbox.engine import is_process_alive
from sandbox.faults import FaultBook
from sandbox.prewarm import engine_workers
from sandbox.runtimes import RUNTIMES_FOLDER, Runtime, prepare_runtimes
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

pytestmark = pytest.mark.integration

PYTHON = "python3.13"
NODE = "nodejs20.x"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"


@pytest.fixture(scope="module")
def prepared(engine_settings: Settings) -> dict[str, Runtime]:
    said: list[str] = []
    runtimes = prepare_runtimes([PYTHON, NODE], engine_settings.cache_dir / RUNTIMES_FOLDER, said.append)
    print("\n".join(said))
    return runtimes


@pytest.fixture(scope="module")
def lam(stack: LocalStack, engine_settings: Settings) -> Any:
    return stack.client("lambda", engine_settings.region)


def zipped(files: dict[str, str]) -> bytes:
    content = io.BytesIO()
    with zipfile.ZipFile(content, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return content.getvalue()


def make_function(lam: Any, runtime: str, handler: str, files: dict[str, str], timeout: int = 30) -> str:
    name = f"rt-{uuid.uuid4().hex[:10]}"
    lam.create_function(
        FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler, Timeout=timeout,
        Code={"ZipFile": zipped(files)},
    )  # fmt: skip
    return name


def invoke(lam: Any, name: str, event: Any = None) -> tuple[str | None, Any]:
    answer = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode())
    return answer.get("FunctionError"), json.loads(answer["Payload"].read() or b"null")


# ------------------------------------------------------------------------------ Python


def test_a_python_handler_importing_a_package_it_does_not_carry_fails_as_on_aws(
    prepared: dict[str, Runtime], lam: Any
) -> None:
    # GIVEN a handler importing pydantic: the sandbox's venv has it, the function's package does not
    name = make_function(lam, PYTHON, "app.lambda_handler", {
        "app.py": "import pydantic\n\ndef lambda_handler(event, context):\n    return 'never'\n",
    })  # fmt: skip
    # WHEN invoked
    error, payload = invoke(lam, name)
    # THEN it fails as on AWS
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert payload["errorMessage"] == "Unable to import module 'app': No module named 'pydantic'"


def test_a_python_handler_sees_its_runtimes_interpreter_and_boto3_and_no_site_packages(
    prepared: dict[str, Runtime], lam: Any
) -> None:
    # GIVEN a handler that reports its interpreter, its path and a boto3 call to the engine
    name = make_function(lam, PYTHON, "app.lambda_handler", {"app.py": (
        "import sys, boto3\n\n"
        "def lambda_handler(event, context):\n"
        "    functions = boto3.client('lambda').list_functions()['Functions']\n"
        "    return {'version': '%d.%d' % sys.version_info[:2], 'path': sys.path,\n"
        "            'boto3': boto3.__file__, 'sees_itself': context.function_name in\n"
        "            [f['FunctionName'] for f in functions]}\n"
    )})  # fmt: skip
    # WHEN invoked
    error, payload = invoke(lam, name)
    # THEN it ran on the interpreter its Runtime names (when installed) with the runtime's boto3
    assert error is None, payload
    assert payload["version"] == prepared[PYTHON].version
    assert payload["sees_itself"] is True
    assert payload["boto3"].startswith(str(prepared[PYTHON].launch.parent.parent / "sdk"))  # type: ignore[union-attr]
    # AND nothing of a site-packages (the sandbox's venv) is on its path
    assert [entry for entry in payload["path"] if "site-packages" in entry] == []


def test_a_missing_python_handler_function_is_runtime_handler_not_found(
    prepared: dict[str, Runtime], lam: Any
) -> None:
    name = make_function(
        lam, PYTHON, "app.lambda_handler", {"app.py": "def handler(event, context):\n    return 1\n"}
    )
    error, payload = invoke(lam, name)
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.HandlerNotFound"
    assert payload["errorMessage"] == "Handler 'lambda_handler' missing on module 'app'"


def test_concurrent_invocations_on_the_isolated_runtime_each_answer(
    prepared: dict[str, Runtime], lam: Any
) -> None:
    # GIVEN a function whose invocations take a moment, so several overlap (several workers)
    name = make_function(lam, PYTHON, "app.lambda_handler", {"app.py": (
        "import os, time\n\ndef lambda_handler(event, context):\n    time.sleep(0.2)\n"
        "    return {'n': event['n'], 'pid': os.getpid()}\n"
    )})  # fmt: skip
    # WHEN eight invocations run at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda n: invoke(lam, name, {"n": n}), range(8)))
    # THEN each gets its own answer
    assert [error for error, _ in answers] == [None] * 8
    assert sorted(payload["n"] for _, payload in answers) == list(range(8))


GATED = """import json, os, time

def lambda_handler(event, context):
    while not os.path.exists(event["gate"]):  # the test opens the gate once the code has changed
        time.sleep(0.01)
    return {"version": VERSION, "pid": os.getpid()}
"""


def test_invocations_in_flight_when_the_code_changes_finish_on_the_old_code_and_the_next_run_the_new(
    prepared: dict[str, Runtime], lam: Any, stack: LocalStack, tmp_path: Any
) -> None:
    # GIVEN two invocations of a function in flight at once (the engine's cap on 2 cores), each held
    # by the test's gate
    name = make_function(lam, PYTHON, "app.lambda_handler", {"app.py": "VERSION = 1\n" + GATED})
    gate = tmp_path / "gate"
    with ThreadPoolExecutor(max_workers=2) as pool:
        running = [pool.submit(invoke, lam, name, {"gate": str(gate)}) for _ in range(2)]

        def leased() -> list[int]:
            workers = engine_workers(stack.engine.endpoint_url) or {"workers": []}
            pids = [w["pid"] for w in workers["workers"] if w["function"] == name and w["inUse"]]
            return pids if len(pids) == 2 else []

        in_flight = wait_until(leased, timeout=60, what="two invocations in flight")
        # WHEN the function's code is updated (as `sandbox watch` does on a save), then the gate opens
        lam.update_function_code(FunctionName=name, ZipFile=zipped({"app.py": "VERSION = 2\n" + GATED}))
        lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
        gate.touch()
        answers = [future.result(timeout=60) for future in running]
    # THEN each in-flight invocation finished on the old code, on the worker it started on
    assert [error for error, _ in answers] == [None] * 2, answers
    assert sorted((payload["version"], payload["pid"]) for _, payload in answers) == [
        (1, p) for p in sorted(in_flight)
    ]
    # AND the next invocation runs the new code, and the old workers are gone
    assert invoke(lam, name, {"gate": str(gate)})[1]["version"] == 2
    wait_until(
        lambda: not any(is_process_alive(pid) for pid in in_flight),
        timeout=10,
        what="the old workers to stop",
    )


def test_a_cold_start_rule_runs_the_invocation_in_an_environment_started_from_nothing(
    prepared: dict[str, Runtime], lam: Any, stack: LocalStack
) -> None:
    # GIVEN a warm function whose module notes whether boto3 was imported before it
    name = make_function(lam, PYTHON, "app.lambda_handler", {"app.py": (
        "import os, sys\nPRELOADED = 'boto3' in sys.modules\nimport boto3\n\n"
        "def lambda_handler(event, context):\n    return {'pid': os.getpid(), 'preloaded': PRELOADED}\n"
    )})  # fmt: skip
    _, warm = invoke(lam, name)
    assert warm["preloaded"] is True  # forked from the runtime's pre-imported parent
    # WHEN its next invocation is given a cold start by a fault rule
    book = FaultBook(stack.engine.endpoint_url)
    (rule,) = book.add([{"target": {"function": name}, "kind": "cold-start", "attempts": [1, 1]}])
    try:
        error, cold = invoke(lam, name)
    finally:
        book.clear(rule["id"])
    # THEN it ran in a new environment that imported everything itself
    assert error is None and cold["pid"] != warm["pid"] and cold["preloaded"] is False
    # AND the invocation after it is warm again, on that environment
    assert invoke(lam, name)[1] == cold


def test_cold_start_on_the_isolated_runtime(prepared: dict[str, Runtime], lam: Any) -> None:
    """Not a benchmark: reports a cold and a warm invocation so the launcher's cost is visible."""
    name = make_function(lam, PYTHON, "app.lambda_handler", {"app.py": (
        "import boto3\n\ndef lambda_handler(event, context):\n    return 'ok'\n"
    )})  # fmt: skip
    started = time.perf_counter()
    assert invoke(lam, name) == (None, "ok")
    cold = time.perf_counter() - started
    started = time.perf_counter()
    assert invoke(lam, name) == (None, "ok")
    warm = time.perf_counter() - started
    print(f"\n{PYTHON} isolated: cold {cold * 1000:.0f} ms, warm {warm * 1000:.0f} ms")
    assert warm < cold


# ------------------------------------------------------------------------------ Node.js

PAYMENT = """
class PaymentDeclined extends Error {
  constructor(message) { super(message); this.name = "PaymentDeclined"; }
}
exports.handler = async (event) => { throw new PaymentDeclined("card declined for " + event.orderId); };
"""

DYNAMODB = """
const { DynamoDBClient, ListTablesCommand } = require("@aws-sdk/client-dynamodb");
const { DynamoDBDocumentClient } = require("@aws-sdk/lib-dynamodb");
exports.handler = async () => {
  const client = new DynamoDBClient({});
  DynamoDBDocumentClient.from(client);
  const tables = await client.send(new ListTablesCommand({}));
  return { tables: tables.TableNames.length, sdk: require.resolve("@aws-sdk/client-dynamodb") };
};
"""


@pytest.fixture(scope="module")
def node(prepared: dict[str, Runtime]) -> Runtime:
    if shutil.which("node") is None or NODE not in prepared:
        pytest.skip("node is not installed: the Node.js runtime is not prepared")
    return prepared[NODE]


def test_a_node_error_is_named_by_its_class(node: Runtime, lam: Any) -> None:
    name = make_function(lam, NODE, "index.handler", {"index.js": PAYMENT})
    error, payload = invoke(lam, name, {"orderId": "o-1"})
    assert error == "Unhandled"
    assert payload["errorType"] == "PaymentDeclined"
    assert payload["errorMessage"] == "card declined for o-1"


def test_a_node_handler_requiring_the_runtimes_sdk_v3_works(node: Runtime, lam: Any) -> None:
    name = make_function(lam, NODE, "index.handler", {"index.js": DYNAMODB})
    error, payload = invoke(lam, name)
    assert error is None, payload
    assert isinstance(payload["tables"], int)  # answered by the engine, through the real SDK
    assert payload["sdk"].startswith(str(node.launch.parent.parent / "sdk"))  # type: ignore[union-attr]


def test_a_node_module_that_fails_to_load_is_runtime_import_module_error(node: Runtime, lam: Any) -> None:
    name = make_function(
        lam, NODE, "index.handler", {"index.js": "require('left-pad');\nexports.handler = async () => 1;\n"}
    )
    error, payload = invoke(lam, name)
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert payload["errorMessage"].startswith("Error: Cannot find module 'left-pad'")


# ------------------------------------------------------------------------------ Step Functions


def execution_of(
    stack: LocalStack, settings: Settings, definition: dict[str, Any], role: str = ROLE
) -> dict[str, Any]:
    sfn = stack.client("stepfunctions", settings.region)
    machine = sfn.create_state_machine(
        name=f"rt-{uuid.uuid4().hex[:10]}", definition=json.dumps(definition), roleArn=role
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    finished: dict[str, Any] = {}

    def is_done() -> bool:
        finished.update(sfn.describe_execution(executionArn=arn))
        return finished["status"] != "RUNNING"

    wait_until(is_done, timeout=30, what=f"the execution {arn}")
    return finished


def test_in_step_functions_a_tasks_error_is_the_handlers_error_type(
    node: Runtime, lam: Any, stack: LocalStack, engine_settings: Settings
) -> None:
    # GIVEN a saga step whose Node handler throws PaymentDeclined, caught by that name
    function = make_function(lam, NODE, "index.handler", {"index.js": PAYMENT})
    arn = lam.get_function(FunctionName=function)["Configuration"]["FunctionArn"]
    definition = {"StartAt": "Charge", "States": {
        "Charge": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                   "Parameters": {"FunctionName": arn, "Payload": {"orderId": "o-2"}},
                   "Catch": [{"ErrorEquals": ["PaymentDeclined"], "ResultPath": "$.error", "Next": "Declined"}],
                   "End": True},
        "Declined": {"Type": "Pass", "End": True},
    }}  # fmt: skip
    # WHEN it runs
    finished = execution_of(stack, engine_settings, definition)
    # THEN the Catch on the error's name applied, with the error as the Cause
    assert finished["status"] == "SUCCEEDED", finished
    caught = json.loads(finished["output"])["error"]
    assert caught["Error"] == "PaymentDeclined"
    assert json.loads(caught["Cause"])["errorMessage"] == "card declined for o-2"


def test_an_sns_publish_task_reaches_a_subscriber_filtering_on_its_message_attributes(
    stack: LocalStack, engine_settings: Settings
) -> None:
    # GIVEN a topic and a queue subscribed with a filter policy on a message attribute
    region = engine_settings.region
    sns, sqs = stack.client("sns", region), stack.client("sqs", region)
    suffix = uuid.uuid4().hex[:10]
    topic = sns.create_topic(Name=f"rt-{suffix}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"rt-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={
        "FilterPolicy": json.dumps({"kind": ["refund"]}), "RawMessageDelivery": "true",
    })  # fmt: skip
    # WHEN a state machine publishes twice: an attribute the policy takes, then one it does not
    definition = {"StartAt": "Refund", "States": {
        "Refund": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "Next": "Other",
                   "Parameters": {"TopicArn": topic, "Message": "refund o-3", "MessageAttributes": {
                       "kind": {"DataType": "String", "StringValue": "refund"}}}},
        "Other": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "End": True,
                  "Parameters": {"TopicArn": topic, "Message": "shipped o-3", "MessageAttributes": {
                      "kind": {"DataType": "String", "StringValue": "shipped"}}}},
    }}  # fmt: skip
    finished = execution_of(stack, engine_settings, definition)
    assert finished["status"] == "SUCCEEDED", finished
    # THEN the subscriber received the refund only
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert [message["Body"] for message in received.get("Messages", [])] == ["refund o-3"]
