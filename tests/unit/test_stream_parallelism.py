"""The DynamoDB stream poller's lanes: ParallelizationFactor, per-key order, AWS's failure semantics per lane."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from sandbox.engine_patches.streams import (
    FIRST_RETRY_SECONDS,
    MAX_RETRY_SECONDS,
    STREAM_DELIVERY,
    StreamPoller,
    StreamSource,
    parallelization_factor,
    partition_lane,
    retry_delay,
)

MAPPING = {"UUID": "esm-1", "FunctionName": "publisher", "EventSourceArn": "arn:stream", "BatchSize": 10,
           "FunctionResponseTypes": ["ReportBatchItemFailures"], "BisectBatchOnFunctionError": True,
           "MaximumRetryAttempts": 2}  # fmt: skip
FUNC = {"config": {"FunctionName": "publisher"}}
NOW = 1_000_000.0


def _record(sequence: int, key: str, created: float = NOW) -> dict[str, Any]:
    return {"eventSource": "aws:dynamodb", "eventSourceARN": "arn:stream", "eventName": "INSERT",
            "dynamodb": {"Keys": {"pk": {"S": key}, "sk": {"S": f"v{sequence}"}},
                         "SequenceNumber": str(sequence), "ApproximateCreationDateTime": created}}  # fmt: skip


def _sequences(records: list[dict[str, Any]]) -> list[int]:
    return [int(record["dynamodb"]["SequenceNumber"]) for record in records]


def _key(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["Keys"]["pk"]["S"])


class FakeShard:
    """An engine stream of records, a publisher failing the records named, and the poller over them.

    Deliveries are queued instead of run, so a test decides when (and in which order) they run;
    time moves only when the test moves it.
    """

    def __init__(self, mapping: dict[str, Any] | None = None, *, keep: Callable[..., Any] = list) -> None:
        self.mapping = dict(MAPPING if mapping is None else mapping)
        self.records: list[dict[str, Any]] = []
        self.position: int | None = None
        self.poison: set[int] = set()  # reported as failed (ReportBatchItemFailures)
        self.crash_on: set[int] = set()  # a function error for any batch holding one
        self.stray: list[str] = []  # identifiers reported that name no record
        self.deliveries: list[list[int]] = []
        self.attempts: list[int] = []  # the delivery attempt fault rules see, per delivery
        self.discarded: list[tuple[list[int], str]] = []
        self.queued: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self.most_in_flight = 0
        self.scheduled: list[float] = []
        self.wakes = 0
        self.now = NOW
        self._keep = keep
        self.poller = StreamPoller(
            self._execute, self._send, self._dispatch, self._wake,
            schedule=lambda delay, action: self.scheduled.append(delay), clock=lambda: self.now,
        )  # fmt: skip

    def write(self, *keys: str) -> None:
        for key in keys:
            self.records.append(_record(len(self.records) + 1, key, self.now))

    def source(self) -> StreamSource:
        def position() -> int:
            if self.position is None:
                self.position = 0  # TRIM_HORIZON
            return self.position

        def set_position(value: int) -> None:
            self.position = value

        return StreamSource(
            mapping=self.mapping, function=FUNC, horizon=0, end=len(self.records), partition_key="pk",
            read=lambda start, limit: self.records[start : start + limit], keep=self._keep,
            position=position, set_position=set_position,
        )  # fmt: skip

    def _execute(self, func: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        sequences = _sequences(event["Records"])
        self.deliveries.append(sequences)
        delivery = STREAM_DELIVERY.get()
        assert delivery is not None and delivery.mapping == self.mapping["UUID"]
        self.attempts.append(delivery.attempt)
        if self.crash_on & set(sequences):
            return {"error": True, "body": {"errorType": "Runtime.ExitError"}}
        reported = [str(s) for s in sequences if s in self.poison] + self.stray
        return {"body": {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in reported]}}

    def _send(self, mapping: dict, func: dict, records: list, arn: str, result: dict, condition: str) -> None:
        assert arn == "arn:stream" and result["function_error"]
        self.discarded.append((_sequences(records), condition))

    def _dispatch(self, task: Callable[..., None], *args: Any) -> None:
        self.queued.append((task, args))
        self.most_in_flight = max(self.most_in_flight, len(self.queued))

    def _wake(self) -> None:
        self.wakes += 1

    def poll(self) -> bool:
        return self.poller.poll([self.source()], live=[self.mapping["UUID"]])

    def run_queued(self, shuffle: random.Random | None = None) -> None:
        """Run the deliveries started so far (in dispatch order, or shuffled: lanes run concurrently)."""
        queued, self.queued = self.queued, []
        if shuffle:
            shuffle.shuffle(queued)
        for task, args in queued:
            task(*args)

    def drain(self, passes: int = 200, shuffle: random.Random | None = None) -> None:
        """Poll and deliver until the stream is acknowledged to its end, moving time over the backoffs."""
        for _ in range(passes):
            self.poll()
            if self.position == len(self.records) and not self.queued:
                return
            if self.queued:
                self.run_queued(shuffle)
            else:  # every lane with records is backing off: let the earliest retry come
                self.now += min(self.scheduled) if self.scheduled else MAX_RETRY_SECONDS
                self.scheduled.clear()
        raise AssertionError(f"stream never acknowledged: {self.deliveries}")

    def delivered_in_order(self) -> dict[str, list[int]]:
        """Per key, the sequence numbers in the order the publisher received them."""
        by_sequence = {int(r["dynamodb"]["SequenceNumber"]): _key(r) for r in self.records}
        seen: dict[str, list[int]] = {}
        for delivery in self.deliveries:
            for sequence in delivery:
                seen.setdefault(by_sequence[sequence], []).append(sequence)
        return seen


# ------------------------------------------------------------------ retry timing, lanes


def test_retries_back_off_exponentially_from_a_short_first_retry_to_a_cap() -> None:
    assert retry_delay(0) == retry_delay(1) == FIRST_RETRY_SECONDS < 1.0  # a halving waits as a first retry
    assert [retry_delay(n) for n in (2, 3, 4)] == [FIRST_RETRY_SECONDS * 2, FIRST_RETRY_SECONDS * 4, FIRST_RETRY_SECONDS * 8]  # fmt: skip
    assert retry_delay(10_000) == MAX_RETRY_SECONDS


def test_the_parallelization_factor_stays_within_aws_range() -> None:
    assert [parallelization_factor({"ParallelizationFactor": f}) for f in (None, 0, 1, 4, 10, 25, "x")] == [
        1, 1, 1, 4, 10, 10, 1,
    ]  # fmt: skip


def test_a_partition_keys_records_share_one_lane_whatever_their_sort_key() -> None:
    lanes = {partition_lane(_record(sequence, "OUTBOX#a"), "pk", 4) for sequence in range(20)}
    assert len(lanes) == 1
    spread = {partition_lane(_record(1, f"OUTBOX#{n}"), "pk", 4) for n in range(40)}
    assert spread == {0, 1, 2, 3}
    assert partition_lane(_record(1, "x"), "pk", 1) == 0


# ------------------------------------------------------- AWS's failure semantics, one lane


def test_a_reported_record_is_retried_alone_after_a_short_backoff_not_a_second() -> None:
    # GIVEN a batch whose third record the publisher reports as failed
    shard = FakeShard()
    shard.write("a", "a", "a", "a")
    shard.poison = {3}
    # WHEN the poller delivers it
    shard.poll()
    shard.run_queued()
    # THEN the records before it are checkpointed and the failed one is retried after the first
    # retry's delay, not before
    assert shard.scheduled == [FIRST_RETRY_SECONDS]
    shard.now += FIRST_RETRY_SECONDS / 2
    shard.poll()
    assert shard.queued == [] and shard.position == 2
    shard.now += FIRST_RETRY_SECONDS / 2
    shard.poll()
    shard.run_queued()
    assert shard.deliveries == [[1, 2, 3, 4], [3]]
    assert shard.attempts == [1, 2]


def test_only_the_record_that_keeps_failing_is_dead_lettered_and_the_others_are_processed() -> None:
    # GIVEN a batch of five with a poison record in the middle, and two retries allowed
    shard = FakeShard()
    shard.write("a", "a", "a", "a", "a")
    shard.poison = {3}
    # WHEN the poller delivers it until the stream is acknowledged
    shard.drain()
    # THEN the records before the poison one were delivered once, the poison one alone, three times
    # in all, and it alone went to the on-failure destination; the records after it were delivered again
    assert shard.deliveries == [[1, 2, 3, 4, 5], [3], [3], [4, 5]]
    assert shard.discarded == [([3], "RetryAttemptsExhausted")]


def test_a_function_error_halves_the_batch_without_counting_until_the_record_stands_alone() -> None:
    shard = FakeShard()
    shard.write("a", "a", "a", "a")
    shard.crash_on = {2}
    shard.drain()
    # halves until the crashing record is alone; only its three deliveries alone are counted
    assert shard.deliveries == [[1, 2, 3, 4], [1, 2], [1], [2, 3, 4], [2, 3], [2], [2], [2], [3, 4]]
    assert shard.attempts == [1, 1, 1, 1, 1, 1, 2, 3, 1]
    assert shard.discarded == [([2], "RetryAttemptsExhausted")]


def test_several_reported_records_are_each_dead_lettered_alone() -> None:
    shard = FakeShard()
    shard.write("a", "a", "a", "a", "a")
    shard.poison = {2, 4}
    shard.drain()
    assert [records for records, _condition in shard.discarded] == [[2], [4]]
    assert [d for d in shard.deliveries if 1 in d] == [[1, 2, 3, 4, 5]]


def test_without_bisecting_the_rest_of_the_batch_is_dead_lettered_together() -> None:
    shard = FakeShard({**MAPPING, "BisectBatchOnFunctionError": False})
    shard.write("a", "a", "a")
    shard.poison = {2}
    shard.drain()
    assert shard.deliveries == [[1, 2, 3], [2, 3], [2, 3]]
    assert shard.discarded == [([2, 3], "RetryAttemptsExhausted")]


def test_an_identifier_naming_no_record_fails_the_whole_delivery() -> None:
    shard = FakeShard()
    shard.write("a", "a")
    shard.stray = ["nope"]
    shard.poll()
    shard.run_queued()
    assert shard.position == 0
    shard.stray = []
    shard.drain()
    assert shard.deliveries == [[1, 2], [1], [2]]  # halved, as for a function error


def test_a_success_after_failures_starts_the_next_record_with_a_clean_count() -> None:
    shard = FakeShard()
    shard.write("a")
    shard.poison = {1}
    shard.poll()
    shard.run_queued()
    shard.poison.clear()
    shard.drain()
    shard.write("a")
    shard.poison.add(2)
    shard.drain()
    assert shard.deliveries == [[1], [1], [2], [2], [2]]
    assert shard.discarded == [([2], "RetryAttemptsExhausted")]


def test_failed_records_older_than_the_maximum_age_are_discarded_without_retrying() -> None:
    shard = FakeShard({**MAPPING, "MaximumRecordAgeInSeconds": 60, "MaximumRetryAttempts": -1})
    shard.write("a", "a")
    shard.now += 61
    shard.write("a")
    shard.crash_on = {1}
    shard.poll()
    shard.run_queued()
    # the two old records fail: both past the maximum age, so discarded as such; the young one runs
    assert shard.discarded == [([1, 2], "MaxRecordAgeExceeded")]
    shard.drain()
    assert shard.deliveries == [[1, 2, 3], [3]]


def test_a_delivery_whose_invoke_raises_is_a_failed_delivery_not_a_dead_lane() -> None:
    shard = FakeShard()
    shard.write("a")
    calls: list[int] = []

    def failing_once(func: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("engine hiccup")
        return {"body": {}}

    shard.poller._execute = failing_once  # type: ignore[method-assign]
    shard.drain()
    assert len(calls) == 2 and shard.position == 1


# ------------------------------------------------------------------ ParallelizationFactor


def test_records_of_each_key_reach_the_handler_in_order_while_several_lanes_run_at_once() -> None:
    # GIVEN many records of a few keys, interleaved, on a mapping with ParallelizationFactor 4
    shard = FakeShard({**MAPPING, "ParallelizationFactor": 4, "BatchSize": 3})
    keys = [f"OUTBOX#{n}" for n in range(6)]
    for _ in range(10):
        shard.write(*keys)
    # WHEN the poller delivers them, the lanes' deliveries finishing in random order
    shard.drain(shuffle=random.Random(7))
    # THEN each key's records reached the handler once each, in stream order; several lanes were
    # in flight together, never more than four, and a delivery held one lane's records only
    by_key = shard.delivered_in_order()
    for key in keys:
        written = [int(r["dynamodb"]["SequenceNumber"]) for r in shard.records if _key(r) == key]
        assert by_key[key] == written
    assert 2 <= shard.most_in_flight <= 4
    lane_of = {int(r["dynamodb"]["SequenceNumber"]): partition_lane(r, "pk", 4) for r in shard.records}
    assert all(len({lane_of[s] for s in delivery}) == 1 for delivery in shard.deliveries)
    assert all(len(delivery) <= 3 for delivery in shard.deliveries)


def test_one_pass_starts_one_batch_per_lane_and_none_while_the_lanes_are_busy() -> None:
    shard = FakeShard({**MAPPING, "ParallelizationFactor": 4, "BatchSize": 100})
    shard.write(*[f"k{n}" for n in range(40)])
    shard.poll()
    lanes_busy = len(shard.queued)
    assert lanes_busy == len({partition_lane(r, "pk", 4) for r in shard.records}) > 1
    shard.poll()
    assert len(shard.queued) == lanes_busy  # nothing more until a lane's batch comes back


def test_a_failing_key_holds_back_only_its_own_lane() -> None:
    # GIVEN a mapping with ParallelizationFactor 4 retrying forever, and one key whose first record
    # the publisher keeps reporting as failed
    shard = FakeShard({**MAPPING, "ParallelizationFactor": 4, "BatchSize": 2, "MaximumRetryAttempts": -1})
    keys = [f"OUTBOX#{n}" for n in range(12)]
    shard.write(*keys)
    shard.write(*keys)
    bad = keys[0]
    bad_lane = partition_lane(shard.records[0], "pk", 4)
    shard.poison = {1}
    # WHEN the poller runs for a while, lanes backing off as AWS does
    for _ in range(40):
        shard.poll()
        if shard.queued:
            shard.run_queued()
        else:
            shard.now += min(shard.scheduled, default=MAX_RETRY_SECONDS)
            shard.scheduled.clear()

    # THEN every record of the other lanes was delivered once; the bad lane stopped at its record
    # (its later records wait behind it), and the read position stayed at the failing record
    def lane(sequence: int) -> int:
        return partition_lane(shard.records[sequence - 1], "pk", 4)

    other = [s for s in range(1, len(shard.records) + 1) if lane(s) != bad_lane]
    assert sorted(s for d in shard.deliveries for s in d if lane(s) != bad_lane) == other
    bad_deliveries = [d for d in shard.deliveries if lane(d[0]) == bad_lane]
    assert bad_deliveries[0][0] == 1 and all(d == [1] for d in bad_deliveries[1:]) and len(bad_deliveries) > 3
    assert shard.position == 0
    assert shard.discarded == []
    # WHEN the failure stops
    shard.poison.clear()
    before = len(shard.deliveries)
    shard.drain()
    # THEN the bad lane catches up in order and the other lanes' records are not delivered again
    assert {lane(s) for d in shard.deliveries[before:] for s in d} == {bad_lane}
    assert shard.delivered_in_order()[bad][-2:] == [1, 13]
    assert shard.position == len(shard.records)


def test_bisect_partial_failure_retry_limit_and_on_failure_destination_hold_in_every_lane() -> None:
    # GIVEN ParallelizationFactor 4, one retry allowed, a record that crashes the publisher and
    # another it reports as failed, on two keys, among many healthy records
    shard = FakeShard({**MAPPING, "ParallelizationFactor": 4, "BatchSize": 4, "MaximumRetryAttempts": 1})
    keys = [f"OUTBOX#{n}" for n in range(8)]
    for _ in range(5):
        shard.write(*keys)
    crash = next(s for s, r in enumerate(shard.records, 1) if _key(r) == keys[1] and s > 8)
    poison = next(s for s, r in enumerate(shard.records, 1) if _key(r) == keys[2] and s > 16)
    shard.crash_on, shard.poison = {crash}, {poison}
    # WHEN the poller delivers the stream, lanes finishing in random order
    shard.drain(shuffle=random.Random(3))
    # THEN exactly those two records went to the on-failure destination, each alone, after their
    # retry; every other record reached the publisher, each key's first deliveries in order
    assert sorted(shard.discarded) == sorted([([crash], "RetryAttemptsExhausted"), ([poison], "RetryAttemptsExhausted")])  # fmt: skip
    assert shard.deliveries.count([crash]) == 2 and [poison] in shard.deliveries
    delivered = {s for d in shard.deliveries for s in d}
    assert delivered == set(range(1, len(shard.records) + 1))
    for sequences in shard.delivered_in_order().values():
        firsts = list(dict.fromkeys(sequences))
        assert firsts == sorted(firsts)
    assert shard.position == len(shard.records)


def test_filtered_records_are_skipped_and_count_as_acknowledged() -> None:
    shard = FakeShard(keep=lambda records: [r for r in records if _key(r).startswith("OUTBOX#")])
    shard.write("ORDER#1", "OUTBOX#1", "ORDER#2")
    shard.drain()
    assert shard.deliveries == [[2]]
    assert shard.position == 3


def test_a_position_moved_under_the_poller_restarts_the_lanes_there_and_drops_the_delivery_in_flight() -> (
    None
):
    # GIVEN deliveries in flight that will fail
    shard = FakeShard({**MAPPING, "ParallelizationFactor": 2})
    shard.write("a", "b", "c")
    shard.crash_on = {1, 2}
    shard.poll()
    in_flight = len(shard.queued)
    # WHEN the engine's position moves (its state restored or reset) and the poller polls again
    shard.position = 2
    shard.poll()
    shard.run_queued()
    # THEN the lanes start over at the new position, and the old deliveries' failures count for nothing
    assert shard.deliveries[in_flight:] == [[3]]
    assert shard.scheduled == [] and shard.discarded == []
    shard.poll()
    assert shard.position == 3


def test_a_changed_parallelization_factor_repartitions_once_the_lanes_are_idle() -> None:
    shard = FakeShard()
    shard.write(*[f"k{n}" for n in range(8)])
    shard.drain()
    shard.mapping["ParallelizationFactor"] = 4
    shard.write(*[f"k{n}" for n in range(8)])
    shard.poll()
    assert len(shard.queued) > 1
    assert [lane.index for lane in shard.poller.lanes("esm-1")] == [0, 1, 2, 3]


def test_lanes_of_a_deleted_mapping_are_dropped_with_what_they_had_in_flight() -> None:
    shard = FakeShard()
    shard.write("a")
    shard.crash_on = {1}
    shard.poll()
    shard.poller.poll([], live=["another-mapping"])
    assert shard.poller.lanes("esm-1") == []
    shard.run_queued()
    assert shard.discarded == [] and shard.scheduled == []
