"""ParallelizationFactor on the session's engine: per-key order, lanes at once, a failure held in its lane.

Each test has its own table, on-failure queue and stream mapping (ParallelizationFactor 4) to one
function of this module's own, whose handler appends each batch it receives to a file (the
worker runs on this machine) and fails the records whose item says so.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.engine_patches.streams import partition_lane
from sandbox.settings import Settings
from sandbox.stack import LocalStack
from sandbox.waiting import wait_until

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::000000000000:role/lambda-role"
FACTOR = 4
HANDLER = """\
import json, os, time

def lambda_handler(event, context):
    started = time.time()
    records = event["Records"]
    failures = [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in records
                if "fail" in r["dynamodb"]["NewImage"]]
    time.sleep(0.1)  # long enough for the lanes' batches to overlap
    line = {"start": started, "end": time.time(),
            "records": [[r["dynamodb"]["NewImage"]["pk"]["S"], int(r["dynamodb"]["NewImage"]["n"]["N"]),
                         r["dynamodb"]["SequenceNumber"]] for r in records]}
    table = records[0]["eventSourceARN"].split("/")[1]
    with open(os.path.join(os.environ["LOG_DIR"], table + ".jsonl"), "a") as log:
        log.write(json.dumps(line) + "\\n")
    if any("crash" in r["dynamodb"]["NewImage"] for r in records):
        raise RuntimeError("crash")
    return {"batchItemFailures": failures}
"""


def lane_of(key: str) -> int:
    return partition_lane({"dynamodb": {"Keys": {"pk": {"S": key}}}}, "pk", FACTOR)


class Stream:
    """A table with a stream, its mapping to the recording function, and the mapping's on-failure queue."""

    def __init__(self, clients: dict[str, Any], log_dir: Path, function: str, **mapping: Any) -> None:
        self.clients = clients
        self.table = f"par-{uuid.uuid4().hex[:10]}"
        ddb, sqs = clients["dynamodb"], clients["sqs"]
        stream_arn = ddb.create_table(
            TableName=self.table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )["TableDescription"]["LatestStreamArn"]  # fmt: skip
        self.queue_url = sqs.create_queue(QueueName=f"{self.table}-failures")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]  # fmt: skip
        self.mapping = clients["lambda"].create_event_source_mapping(
            FunctionName=function, EventSourceArn=stream_arn, StartingPosition="TRIM_HORIZON",
            ParallelizationFactor=FACTOR, FunctionResponseTypes=["ReportBatchItemFailures"],
            DestinationConfig={"OnFailure": {"Destination": queue_arn}}, **mapping,
        )["UUID"]  # fmt: skip
        self.log = log_dir / f"{self.table}.jsonl"
        self.sequences: dict[tuple[str, int], str] = {}
        self._letters: dict[str, dict[str, Any]] = {}

    def write(self, key: str, n: int, **flags: bool) -> None:
        self.clients["dynamodb"].put_item(
            TableName=self.table,
            Item={"pk": {"S": key}, "n": {"N": str(n)}, **{f: {"BOOL": True} for f in flags}},
        )

    def deliveries(self) -> list[dict[str, Any]]:
        """Each batch the handler received, in the order it wrote them down."""
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        for line in lines:
            for key, n, sequence in line["records"]:
                self.sequences[(key, n)] = sequence
        return lines

    def received(self) -> dict[str, list[int]]:
        """Per key, the item versions in the order the handler received them."""
        by_key: dict[str, list[int]] = {}
        for line in self.deliveries():
            for key, n, _sequence in line["records"]:
                by_key.setdefault(key, []).append(n)
        return by_key

    def letters(self) -> list[dict[str, Any]]:
        """The on-failure records the mapping sent so far."""
        sqs = self.clients["sqs"]
        messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        for message in messages.get("Messages", []):
            self._letters[message["MessageId"]] = json.loads(message["Body"])
        return list(self._letters.values())

    def close(self) -> None:
        self.clients["lambda"].delete_event_source_mapping(UUID=self.mapping)
        self.clients["dynamodb"].delete_table(TableName=self.table)
        self.clients["sqs"].delete_queue(QueueUrl=self.queue_url)


@pytest.fixture(scope="module")
def clients(stack: LocalStack, engine_settings: Settings) -> dict[str, Any]:
    return {name: stack.client(name, engine_settings.region) for name in ("lambda", "dynamodb", "sqs")}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stream-deliveries")


@pytest.fixture(scope="module")
def recorder(clients: dict[str, Any], log_dir: Path) -> Iterator[str]:
    name = f"par-recorder-{uuid.uuid4().hex[:8]}"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as package:
        package.writestr("app.py", HANDLER)
    clients["lambda"].create_function(
        FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.lambda_handler", Timeout=30,
        Code={"ZipFile": archive.getvalue()}, Environment={"Variables": {"LOG_DIR": str(log_dir)}},
    )  # fmt: skip
    yield name
    clients["lambda"].delete_function(FunctionName=name)


@pytest.fixture
def make_stream(clients: dict[str, Any], log_dir: Path, recorder: str) -> Iterator[Callable[..., Stream]]:
    made: list[Stream] = []

    def make(**mapping: Any) -> Stream:
        made.append(Stream(clients, log_dir, recorder, **mapping))
        return made[-1]

    yield make
    for stream in made:
        stream.close()


def most_at_once(deliveries: list[dict[str, Any]]) -> int:
    """The most batches the handler was running at the same moment."""
    edges = sorted([(d["start"], 1) for d in deliveries] + [(d["end"], -1) for d in deliveries])
    running = most = 0
    for _at, change in edges:
        running += change
        most = max(most, running)
    return most


def test_each_keys_records_reach_the_handler_in_order_while_lanes_run_at_once(
    make_stream: Callable[..., Stream],
) -> None:
    # GIVEN a stream mapping with ParallelizationFactor 4 and batches of three
    stream = make_stream(BatchSize=3)
    keys = [f"key-{n}" for n in range(6)]
    # WHEN six keys' items are each written eight times, interleaved
    for n in range(8):
        for key in keys:
            stream.write(key, n)
    # THEN every version of every item reaches the handler once, each key's in the order written,
    # while several batches ran at the same time
    received = wait_until(
        lambda: (r := stream.received()) and sum(map(len, r.values())) >= 48 and r,
        timeout=60, what="48 stream records at the handler",
    )  # fmt: skip
    assert received == {key: list(range(8)) for key in keys}
    assert most_at_once(stream.deliveries()) >= 2


def test_a_failing_key_holds_back_its_lane_only(make_stream: Callable[..., Stream]) -> None:
    # GIVEN a mapping retrying forever, and a record the handler always reports as failed
    stream = make_stream(BatchSize=1, MaximumRetryAttempts=-1)
    bad = "key-bad"
    behind = next(f"key-{n}" for n in range(100) if lane_of(f"key-{n}") == lane_of(bad))
    others = [f"key-{n}" for n in range(100) if lane_of(f"key-{n}") != lane_of(bad)][:3]
    stream.write(bad, 0, fail=True)
    # WHEN records of keys in the other lanes, and one of a key in the failing record's lane, follow it
    for n in range(4):
        for key in others:
            stream.write(key, n)
    stream.write(behind, 0)
    # THEN the other lanes deliver all their records, in order, while the failing record is retried
    # again and again and the record behind it in its lane waits
    wait_until(lambda: all(stream.received().get(key) == list(range(4)) for key in others),
               timeout=60, what="the other lanes' records at the handler")  # fmt: skip
    wait_until(
        lambda: len(stream.received().get(bad, [])) >= 3, timeout=30, what="the failing record retried"
    )
    assert behind not in stream.received()
    assert stream.letters() == []


def test_bisect_partial_failure_retry_limit_and_on_failure_destination_in_parallel_lanes(
    make_stream: Callable[..., Stream],
) -> None:
    # GIVEN a mapping with ParallelizationFactor 4 that bisects, retries once and has an on-failure queue
    stream = make_stream(BatchSize=4, BisectBatchOnFunctionError=True, MaximumRetryAttempts=1)
    keys = [f"key-{n}" for n in range(6)]
    # WHEN six keys' items are written five times each, one version crashing the handler and one
    # reported by it as failed
    for n in range(5):
        for key in keys:
            stream.write(key, n, **({"crash": True} if (key, n) == ("key-1", 2) else {}),
                         **({"fail": True} if (key, n) == ("key-2", 3) else {}))  # fmt: skip
    # THEN exactly those two records go to the on-failure queue, each alone, once retried
    letters = wait_until(lambda: (found := stream.letters()) and len(found) >= 2 and found,
                         timeout=60, what="two on-failure records")  # fmt: skip
    batches = sorted(
        (letter["DDBStreamBatchInfo"]["startSequenceNumber"], letter["DDBStreamBatchInfo"]["endSequenceNumber"],
         letter["DDBStreamBatchInfo"]["batchSize"], letter["requestContext"]["condition"]) for letter in letters
    )  # fmt: skip
    stream.deliveries()
    crashed, failed = stream.sequences[("key-1", 2)], stream.sequences[("key-2", 3)]
    assert batches == sorted([(crashed, crashed, 1, "RetryAttemptsExhausted"), (failed, failed, 1, "RetryAttemptsExhausted")])  # fmt: skip
    # AND every other record reached the handler, each key's first deliveries in the order written
    received = wait_until(
        lambda: (r := stream.received()) and all(set(r.get(key, [])) == set(range(5)) for key in keys) and r,
        timeout=60, what="every record at the handler",
    )  # fmt: skip
    for key in keys:
        assert list(dict.fromkeys(received[key])) == list(range(5))
    assert len(stream.letters()) == 2
