"""Benchmarks: `sandbox up` cold to ready, warm order latency, a --fail payment order, hot reload,
`sandbox bench` under load from a cold `sandbox up`, the test suite.

Run with `make bench` (or `python -m benchmarks.run --help`). Figures are printed as a Markdown
table; each engine runs on a free port with its own state folder, so a running sandbox is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox.bench import percentile
from sandbox.clients import make_client
from sandbox.deploy import deploy_stack, ensure_artifact_bucket, make_uploader
from sandbox.engine import HEALTH_PATH, engine_environment, find_free_port, stop_engine
from sandbox.orders import OrdersClient
from sandbox.packaging import load_template
from sandbox.reload import watch_and_reload
from sandbox.runs import OrderRequest, run_order
from sandbox.settings import PROJECT_DIR, Settings
from sandbox.stack import LocalStack, bring_up, deploy_local, find_stack
from sandbox.targets import (
    LOCAL_POLL_SECONDS,
    PackagedStack,
    artifact_bucket,
    local_api_url,
    package_artifacts,
    project_parameters,
)
from sandbox.waiting import wait_until

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
ORDER = {"customerId": "bench", "items": [{"productId": "mug", "quantity": 1, "price": 12.0}]}


def time_cli_up() -> float:
    """Wall time of `sandbox up` (fresh engine, deploy, seed), as a person sees it."""
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "SANDBOX_PORT": str(find_free_port()), "SANDBOX_STATE_DIR": state}
        started = time.perf_counter()
        subprocess.run([SANDBOX, "up"], env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        subprocess.run([SANDBOX, "down"], env=env, check=True, capture_output=True)
    return seconds


def time_first_orders(runs: int) -> tuple[list[float], list[float]]:
    """The first order right after a cold `sandbox up`: POST to COMPLETED, and its own stamps.

    As a person does it: `sandbox up` (which warms the functions in the background on engines
    that can), then at once an order. Each run on a fresh engine and state folder.
    """
    seen: list[float] = []
    recorded: list[float] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as state:
            port = find_free_port()
            env = {**os.environ, "SANDBOX_PORT": str(port), "SANDBOX_STATE_DIR": state}
            subprocess.run([SANDBOX, "up"], env=env, check=True, capture_output=True)
            try:
                settings = Settings.load(port=port, state_dir=Path(state))
                client = OrdersClient(find_stack(settings).api_url)
                seen += time_orders(client, ORDER, 1, in_order_item=recorded)
            finally:
                subprocess.run([SANDBOX, "down"], env=env, check=True, capture_output=True)
    return seen, recorded


def time_bare_engine_up(packaged: PackagedStack) -> float:
    """The bare engine doing the same work as `sandbox up`: start, then deploy the packaged template.

    No CLI, no packaging (done beforehand), no seeding, no patches: the floor `sandbox up` is
    compared with. The clients are built before the clock starts.
    """
    settings = Settings.load(port=find_free_port())
    s3 = make_client("s3", endpoint_url=settings.endpoint_url, region=settings.region)
    cfn = make_client("cloudformation", endpoint_url=settings.endpoint_url, region=settings.region)
    bucket = artifact_bucket(settings.stack_name)
    started = time.perf_counter()
    engine = subprocess.Popen([sys.executable, "-m", "ministack"], env=engine_environment(settings.port),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: _is_healthy(settings.endpoint_url), timeout=30, what="the bare engine's health",
                   interval=0.05, max_interval=0.05)  # fmt: skip
        ensure_artifact_bucket(s3, bucket, settings.region)
        upload = make_uploader(s3, bucket)
        for key, content in packaged.artifacts.items():
            upload(key, content)
        deploy_stack(
            cfn, settings.stack_name, packaged.template, packaged.parameters, poll_seconds=LOCAL_POLL_SECONDS
        )
        return time.perf_counter() - started
    finally:
        engine.kill()
        engine.wait()


def _is_healthy(endpoint_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint_url}{HEALTH_PATH}", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def time_up_side_by_side(runs: int) -> tuple[list[float], list[float]]:
    """`sandbox up` and the bare engine's start + deploy, alternating, so both meet the same machine."""
    settings = Settings.load()
    source = load_template(settings.template_path)
    packaged = package_artifacts(settings, source, project_parameters(settings, source), "embedded")
    cli, bare = [], []
    for _ in range(runs):
        cli.append(time_cli_up())
        bare.append(time_bare_engine_up(packaged))
    return cli, bare


def time_cli_orders(settings: Settings, runs: int) -> list[float]:
    """Wall time of `sandbox order` (process start to exit) on a warm engine, as a person sees it."""
    env = {**os.environ, "SANDBOX_PORT": str(settings.port), "SANDBOX_STATE_DIR": str(settings.state_dir)}
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([SANDBOX, "order"], env=env, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def run_cli_bench(
    orders: int, concurrency: int, mix: str, runs: int, wait_seconds: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """`sandbox bench --json` on a fresh engine each run, as a person runs it right after a cold `sandbox up`.

    Returns the JSON summaries of the runs that measured, and the error line of each that did not.
    """
    summaries: list[dict[str, Any]] = []
    failures: list[str] = []
    for run in range(runs):
        with tempfile.TemporaryDirectory() as state:
            env = {**os.environ, "SANDBOX_PORT": str(find_free_port()), "SANDBOX_STATE_DIR": state}
            subprocess.run([SANDBOX, "up"], env=env, check=True, capture_output=True)
            try:
                print(f"  run {run + 1} of {runs}: {orders} orders, {concurrency} clients, mix {mix}…",
                      file=sys.stderr)  # fmt: skip
                result = subprocess.run(
                    [SANDBOX, "bench", "--orders", str(orders), "--concurrency", str(concurrency), "--mix", mix,
                     "--seed", str(run + 1), "--wait-seconds", str(wait_seconds), "--json"],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
            finally:
                subprocess.run([SANDBOX, "down"], env=env, check=True, capture_output=True)
        if result.stdout.strip():
            summaries.append(json.loads(result.stdout))
        else:  # it ended before measuring (e.g. its orders outlasted the wait): keep why, run the others
            failures.append(result.stderr.strip().splitlines()[0] if result.stderr.strip() else "no output")
    return summaries, failures


def bench_rows(summaries: list[dict[str, Any]], label: str) -> list[str]:
    """The `sandbox bench` figures, each the median of the runs (min and max beside it when several)."""

    def spread(values: list[float], unit: str, digits: int = 0) -> str:
        text = f"{statistics.median(values):.{digits}f}{unit}"
        if len(values) > 1:
            text += f" (min {min(values):.{digits}f}, max {max(values):.{digits}f})"
        return text

    def pick(*path: str) -> list[float]:
        values = []
        for summary in summaries:
            value: Any = summary
            for key in path:
                value = value[key]
            values.append(float(value))
        return values

    count = len(summaries)
    latency = ", ".join(
        f"{share} {spread(pick('latencyMs', share), ' ms')}" for share in ("p50", "p95", "p99")
    )
    held = sum(1 for summary in summaries if summary["verdict"]["holds"])
    unexpected = sum(len(summary["unexpected"]) for summary in summaries)
    rows = [
        f"| {label}: orders accepted per second | {spread(pick('throughput', 'acceptedPerSecond'), '/s', 1)} | {count} | - |",
        f"| {label}: orders terminal per second | {spread(pick('throughput', 'completedPerSecond'), '/s', 1)} | {count} | - |",
        f"| {label}: POST to terminal status | {latency} | {count} | - |",
    ]
    if all(summary["resources"] for summary in summaries):
        rows += [
            f"| {label}: engine + workers CPU per order | {spread(pick('resources', 'cpuSecondsPerOrder'), ' s', 3)} | {count} | - |",
            f"| {label}: engine + workers peak RSS (summed per process) | {spread(pick('resources', 'peakRssMb'), ' MB')} | {count} | - |",
            f"| {label}: engine + workers peak PSS | {spread(pick('resources', 'peakPssMb'), ' MB')} | {count} | ≤ 250 MB |",
            f"| {label}: engine + workers PSS after the burst | {spread(pick('resources', 'pssAfterMb'), ' MB')} | {count} | ≤ 150 MB |",
            f"| {label}: peak Lambda workers | {spread(pick('resources', 'peakWorkers'), '')} | {count} | - |",
        ]
    rows.append(
        f"| {label}: verdict from the tables | holds in {held} of {count}; {unexpected} order(s) ended other "
        f"than planned | {count} | holds, 0 |"
    )
    return rows


def time_orders(
    client: OrdersClient, body: dict, runs: int, in_order_item: list[float] | None = None
) -> list[float]:
    """POST /orders until the client sees the saga's terminal status, in seconds, one order after another.

    ``in_order_item`` collects the same span as the system itself recorded it: from the order's
    ``createdAt`` (the API's write) to its ``updatedAt`` (the terminal status write), without
    the client's polling.
    """
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        placed = client.place_order(body)
        order = client.follow_order(placed["orderId"], timeout=60)
        seconds.append(time.perf_counter() - started)
        if in_order_item is not None:
            span = datetime.fromisoformat(order["updatedAt"]) - datetime.fromisoformat(order["createdAt"])
            in_order_item.append(span.total_seconds())
    return seconds


def time_failing_orders(client: OrdersClient, stack: LocalStack, region: str, runs: int) -> list[float]:
    """`--fail payment` orders (a fault rule set for each before it is placed), POST to FAILED, in seconds."""
    request = OrderRequest(
        customer_id=ORDER["customerId"], items=tuple(ORDER["items"]), faults={"fail": "payment"}
    )
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        run = run_order(client, request, local=(stack, region))
        seconds.append(time.perf_counter() - started)
        assert run.final is not None and run.final["status"] == "FAILED", run
    return seconds


def time_reload(settings: Settings, stack: LocalStack, runs: int) -> tuple[list[float], list[float]]:
    """Save a handler edit; seconds until the watcher has pushed it, and until the API answers with it."""
    with tempfile.TemporaryDirectory() as copy_dir:
        copy = Path(copy_dir)
        for name in ("template.yaml", "services", "state_machines"):
            source = PROJECT_DIR / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / name)
        local = replace(settings, project_dir=copy, stack_name="bench-reload")
        deployed = deploy_local(local, stack.engine, lambda _: None)
        target = LocalStack(stack.engine, deployed.outputs)
        api = OrdersClient(local_api_url(stack.engine.endpoint_url, deployed.outputs["ApiId"]))
        handler = copy / "services" / "order_api" / "handler.py"
        pushed: list[float] = []
        answered: list[float] = []
        # One update per function the save rebuilt (all seven share services/): (when, logical id).
        updates: queue.Queue[tuple[float, str]] = queue.Queue()
        stop = threading.Event()
        watcher = threading.Thread(target=watch_and_reload, args=(local, target, lambda u: updates.put((time.time(), u.logical_id)),
                                                                   lambda e: None, stop))  # fmt: skip
        watcher.start()
        original = handler.read_text()

        def is_watching() -> bool:
            # Save until the watcher reacts: its first save may land before it watches.
            handler.write_text(handler.read_text() + "\n")
            try:
                updates.get(timeout=0.5)
            except queue.Empty:
                return False
            return True

        wait_until(is_watching, timeout=30, what="the watcher to push a first save")
        handler.write_text(original)

        def drain() -> None:  # the pushes of earlier saves: the queue is empty once a second passes quietly
            while True:
                try:
                    updates.get(timeout=1)
                except queue.Empty:
                    return

        def api_pushed() -> float:
            while True:
                at, logical_id = updates.get(timeout=30)
                if logical_id == "OrderApiFunction":
                    return at

        drain()
        try:
            for run in range(runs):
                text = handler.read_text()
                saved = time.time()
                handler.write_text(text.replace("not found", f"not found v{run}", 1))
                pushed.append(api_pushed() - saved)
                wait_until(lambda run=run: f"v{run}" in api.get_order("x").body["message"], timeout=30,
                           what="the edited handler to answer")  # fmt: skip
                answered.append(time.time() - saved)
                drain()
                handler.write_text(text)
                api_pushed()  # the revert is pushed too
                drain()
        finally:
            stop.set()
            watcher.join(timeout=10)
        return pushed, answered


def time_command(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_DIR, check=True, capture_output=True)
    return time.perf_counter() - started


def row(name: str, values: list[float], target: str, summary: Callable[[list[float]], str]) -> str:
    return f"| {name} | {summary(values)} | {len(values)} | {target} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--up-runs", type=int, default=5)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--fail-runs", type=int, default=5)
    parser.add_argument("--reload-runs", type=int, default=5)
    parser.add_argument("--skip-tests", action="store_true", help="do not time the test suite")
    parser.add_argument("--bench-orders", type=int, default=300, help="orders per `sandbox bench` run")
    parser.add_argument(
        "--bench-concurrency", type=int, default=8, help="concurrent clients of `sandbox bench`"
    )
    parser.add_argument("--bench-mix", choices=("happy", "business", "faults"), default="business")
    parser.add_argument(
        "--bench-runs", type=int, default=3, help="`sandbox bench` runs, each from a cold `up`"
    )
    parser.add_argument("--bench-wait-seconds", type=float, default=900,
                        help="how long each run may wait for its orders to end")  # fmt: skip
    parser.add_argument("--skip-bench", action="store_true", help="do not run `sandbox bench`")
    parser.add_argument("--skip-single", action="store_true",
                        help="only `sandbox bench` (and the tests): skip up, single orders and hot reload")  # fmt: skip
    args = parser.parse_args()

    def median_s(values: list[float]) -> str:
        return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"

    def p50_p90(values: list[float]) -> str:
        return (
            f"p50 {percentile(values, 0.5) * 1000:.0f} ms, p90 {percentile(values, 0.9) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms"
        )

    rows = []
    notes: list[str] = []
    if not args.skip_single:
        print(
            f"timing `sandbox up` from cold beside the bare engine, {args.up_runs} runs each…",
            file=sys.stderr,
        )
        cli_up, bare_up = time_up_side_by_side(args.up_runs)
        rows.append(row("`sandbox up`, cold to ready (engine + deploy + seed)", cli_up, "< 3 s", median_s))
        rows.append(
            row("bare engine start + the same CloudFormation deploy (no CLI)", bare_up, "-", median_s)
        )
        ratio = statistics.median(cli_up) / statistics.median(bare_up)
        rows.append(f"| `sandbox up` ÷ bare engine (medians) | {ratio:.2f}× | {args.up_runs} | ≤ 1.3× |")
        print(f"timing the first order after a cold `sandbox up`, {args.up_runs} runs…", file=sys.stderr)
        first_seen, first_recorded = time_first_orders(args.up_runs)
        rows.append(
            row(
                "first order after `sandbox up`, POST to COMPLETED seen by the client",
                first_seen,
                "≤ 0.3 s",
                p50_p90,
            )
        )
        rows.append(
            row(
                "first order after `sandbox up`, accepted to COMPLETED (its own stamps)",
                first_recorded,
                "-",
                p50_p90,
            )
        )
        rows.append(
            row(
                "`sandbox --help` wall clock",
                [time_command([SANDBOX, "--help"]) for _ in range(args.orders)],
                "≤ 150 ms",
                p50_p90,
            )
        )

        with tempfile.TemporaryDirectory() as state:
            settings = Settings.load(port=find_free_port(), state_dir=Path(state))
            try:
                stack = bring_up(settings).stack
                client = OrdersClient(stack.api_url)
                print("warming the Lambda workers…", file=sys.stderr)
                time_orders(client, ORDER, 2)
                time_failing_orders(client, stack, settings.region, 1)
                print(f"timing {args.orders} warm happy-path orders…", file=sys.stderr)
                recorded: list[float] = []
                seen = time_orders(client, ORDER, args.orders, in_order_item=recorded)
                rows.append(
                    row(
                        "warm happy-path order, accepted to COMPLETED (the order item's own stamps)",
                        recorded,
                        "p50 ≤ 100 ms",
                        p50_p90,
                    )
                )
                rows.append(
                    row("warm happy-path order, POST to COMPLETED seen by the client", seen, "-", p50_p90)
                )
                print(f"timing {args.orders} `sandbox order` commands…", file=sys.stderr)
                rows.append(
                    row(
                        "`sandbox order` wall clock (process start to exit, warm engine)",
                        time_cli_orders(settings, args.orders),
                        "≤ 250 ms",
                        p50_p90,
                    )
                )
                print(f"timing {args.fail_runs} --fail payment orders…", file=sys.stderr)
                rows.append(
                    row(
                        "`--fail payment` order, POST to FAILED (compensated)",
                        time_failing_orders(client, stack, settings.region, args.fail_runs),
                        "< 3 s",
                        median_s,
                    )
                )
                print("timing hot reload…", file=sys.stderr)
                pushed, answered = time_reload(settings, stack, args.reload_runs)
                rows.append(
                    row(
                        "hot reload: handler saved to the order API's code live on the engine",
                        pushed,
                        "< 1 s",
                        median_s,
                    )
                )
                rows.append(
                    row(
                        "hot reload: handler saved to first answer from the new code", answered, "-", median_s
                    )
                )
            finally:
                stop_engine(settings)

    if not args.skip_bench and args.bench_runs > 0:
        print(f"`sandbox bench` from a cold `sandbox up`, {args.bench_runs} run(s)…", file=sys.stderr)
        summaries, failures = run_cli_bench(args.bench_orders, args.bench_concurrency, args.bench_mix,
                                            args.bench_runs, args.bench_wait_seconds)  # fmt: skip
        if summaries:
            rows += bench_rows(summaries, "bench")
        rows += [f"| bench: run failed | {failure} | 1 | - |" for failure in failures]
        notes.append(
            f"bench: `sandbox bench --orders {args.bench_orders} --concurrency {args.bench_concurrency} "
            f"--mix {args.bench_mix}` right after a cold `sandbox up`, seeds 1 to {args.bench_runs}; "
            "each figure is the median of the runs, with min and max."
        )

    if not args.skip_tests:
        print("timing the test suite (pytest)…", file=sys.stderr)
        rows.append(
            row(
                "`make test` (the suite on its xdist workers, then the example project's)",
                [time_command(["make", "test"])],
                "≤ 180 s",
                median_s,
            )
        )

    print(f"\nMachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    print("| measure | result | runs | target |\n|---|---|---|---|")
    print("\n".join(rows))
    if notes:
        print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
