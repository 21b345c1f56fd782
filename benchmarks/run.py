"""Benchmarks: `sandbox up` cold to ready, warm order latency, a --fail payment order, the test suite.

Run with `make bench` (or `python -m benchmarks.run --help`). Figures are printed as a Markdown
table; each engine runs on a free port with its own state folder, so a running sandbox is left alone.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sandbox.engines import find_free_port, stop_engine
from sandbox.orders import OrdersClient
from sandbox.reload import watch_and_reload
from sandbox.settings import PROJECT_DIR, Settings
from sandbox.stack import LocalStack, bring_up, deploy_local, local_api_url
from sandbox.waiting import wait_until

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
ORDER = {"customerId": "bench", "items": [{"productId": "mug", "quantity": 1, "price": 12.0}]}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def time_cli_up(runs: int) -> list[float]:
    """Wall time of `sandbox up` (fresh engine, deploy, seed), as a person sees it."""
    seconds = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as state:
            env = {**os.environ, "SANDBOX_PORT": str(find_free_port()), "SANDBOX_STATE_DIR": state}
            started = time.perf_counter()
            subprocess.run([SANDBOX, "up"], env=env, check=True, capture_output=True)
            seconds.append(time.perf_counter() - started)
            subprocess.run([SANDBOX, "down"], env=env, check=True, capture_output=True)
    return seconds


def time_orders(client: OrdersClient, body: dict, runs: int) -> list[float]:
    """POST /orders until the saga's terminal status, in seconds, one order after another."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        placed = client.place_order(body)
        client.follow_order(placed["orderId"], timeout=60)
        seconds.append(time.perf_counter() - started)
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
        updates: queue.Queue[float] = queue.Queue()
        stop = threading.Event()
        watcher = threading.Thread(target=watch_and_reload, args=(local, target, lambda u: updates.put(time.time()),
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
        while True:  # drain the pushes of those saves: the queue is empty once a second passes quietly
            try:
                updates.get(timeout=1)
            except queue.Empty:
                break
        try:
            for run in range(runs):
                text = handler.read_text()
                saved = time.time()
                handler.write_text(text.replace("not found", f"not found v{run}", 1))
                pushed.append(updates.get(timeout=30) - saved)
                wait_until(lambda run=run: f"v{run}" in api.get_order("x").body["message"], timeout=30,
                           what="the edited handler to answer")  # fmt: skip
                answered.append(time.time() - saved)
                handler.write_text(text)
                updates.get(timeout=30)  # the revert is pushed too
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
    args = parser.parse_args()

    def median_s(values: list[float]) -> str:
        return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"

    def p50_p90(values: list[float]) -> str:
        return (
            f"p50 {percentile(values, 0.5) * 1000:.0f} ms, p90 {percentile(values, 0.9) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms"
        )

    rows = []
    print(f"timing `sandbox up` from cold, {args.up_runs} runs…", file=sys.stderr)
    rows.append(
        row(
            "`sandbox up`, cold to ready (engine + deploy + seed)",
            time_cli_up(args.up_runs),
            "< 3 s",
            median_s,
        )
    )

    with tempfile.TemporaryDirectory() as state:
        settings = Settings.load(port=find_free_port(), state_dir=Path(state))
        try:
            stack = bring_up(settings).stack
            client = OrdersClient(stack.api_url)
            print("warming the Lambda workers…", file=sys.stderr)
            time_orders(client, ORDER, 2)
            time_orders(client, {**ORDER, "faults": {"fail": "payment"}}, 1)
            print(f"timing {args.orders} warm happy-path orders…", file=sys.stderr)
            rows.append(
                row(
                    "warm happy-path order, POST to COMPLETED",
                    time_orders(client, ORDER, args.orders),
                    "p50 < 1 s",
                    p50_p90,
                )
            )
            print(f"timing {args.fail_runs} --fail payment orders…", file=sys.stderr)
            failing = {**ORDER, "faults": {"fail": "payment"}}
            rows.append(
                row(
                    "`--fail payment` order, POST to FAILED (compensated)",
                    time_orders(client, failing, args.fail_runs),
                    "< 3 s",
                    median_s,
                )
            )
            print("timing hot reload…", file=sys.stderr)
            pushed, answered = time_reload(settings, stack, args.reload_runs)
            rows.append(
                row("hot reload: handler saved to code live on the engine", pushed, "< 1 s", median_s)
            )
            rows.append(
                row("hot reload: handler saved to first answer from the new code", answered, "-", median_s)
            )
        finally:
            stop_engine(settings)

    if not args.skip_tests:
        print("timing the test suite (pytest)…", file=sys.stderr)
        rows.append(
            row(
                "`make test` (pytest, whole suite)",
                [time_command([sys.executable, "-m", "pytest", "-q"])],
                "-",
                median_s,
            )
        )

    print(f"\nMachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    print("| measure | result | runs | target |\n|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
