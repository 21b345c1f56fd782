"""This checkout against another revision, alternating on the same machine: what a change bought.

    git worktree add ../before REV
    python -m benchmarks.side_by_side --before ../before [--runs 3] [--bench-orders 300]

Each side runs the same measures as a person would, through the `sandbox` console script (the
other side's code by PYTHONPATH, in the same venv), on a fresh engine and state folder each run:
the first order right after a cold `sandbox up` (POST to COMPLETED), memory once idle (summed PSS
of the engine and its workers 15 s after that order), `sandbox bench --orders N --concurrency 8
--mix business` right after a cold `sandbox up`, and `sandbox --help` / `sandbox order` wall
clock. Prints a Markdown table of medians (min-max); the runs alternate sides, so both meet the
same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sandbox.bench.resources import read_process_tree
from sandbox.engine import find_free_port
from sandbox.orders import OrdersClient
from sandbox.settings import Settings
from sandbox.stack import find_stack
from sandbox.waiting import wait_until

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
ORDER = {"customerId": "side-by-side", "items": [{"productId": "mug", "quantity": 1, "price": 12.0}]}
IDLE_SECONDS = 15.0  # past the 5 s reaping of surplus workers: one warm worker per function is left


def side_env(code: Path | None, state: str, port: int) -> dict[str, str]:
    env = {**os.environ, "SANDBOX_PORT": str(port), "SANDBOX_STATE_DIR": state}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    return env


@contextmanager
def fresh_up(code: Path | None) -> Iterator[tuple[dict[str, str], Settings]]:
    """A cold `sandbox up` of one side on a free port and a new state folder; `down` after."""
    with tempfile.TemporaryDirectory() as state:
        port = find_free_port()
        env = side_env(code, state, port)
        # Run from the state folder: no template.yaml there, so each side deploys its bundled demo.
        subprocess.run([SANDBOX, "up"], env=env, cwd=state, check=True, capture_output=True)
        try:
            yield env, Settings.load(port=port, state_dir=Path(state))
        finally:
            subprocess.run([SANDBOX, "down"], env=env, cwd=state, check=True, capture_output=True)


def engine_pid(settings: Settings) -> int:
    record = json.loads((settings.state_dir / "engine.json").read_text())
    return int(record["pid"])


def first_order_and_idle(code: Path | None) -> dict[str, float]:
    with fresh_up(code) as (_env, settings):
        client = OrdersClient(find_stack(settings).api_url)
        started = time.perf_counter()
        placed = client.place_order(ORDER)
        client.follow_order(placed["orderId"], timeout=60)
        first = time.perf_counter() - started
        time.sleep(IDLE_SECONDS)  # a measured idle span, not a wait for a condition
        sample = read_process_tree(engine_pid(settings))
        assert sample is not None and sample.pss_bytes is not None
        return {
            "firstOrderS": first,
            "idlePssMb": sample.pss_bytes / 2**20,
            "idleProcesses": sample.descendants + 1,
        }


def bench(code: Path | None, orders: int, seed: int) -> dict[str, Any]:
    with fresh_up(code) as (env, _settings):
        result = subprocess.run(
            [SANDBOX, "bench", "--orders", str(orders), "--concurrency", "8", "--mix", "business",
             "--seed", str(seed), "--json"],
            env=env, cwd=env["SANDBOX_STATE_DIR"], capture_output=True, text=True, check=False,
        )  # fmt: skip
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def cli_times(code: Path | None, runs: int) -> dict[str, float]:
    with fresh_up(code) as (env, settings):
        client = OrdersClient(find_stack(settings).api_url)
        wait_until(lambda: client.follow_order(client.place_order(ORDER)["orderId"], timeout=60), timeout=90,
                   what="a warm order")  # fmt: skip

        def timed(*args: str) -> float:
            started = time.perf_counter()
            subprocess.run(
                [SANDBOX, *args], env=env, cwd=env["SANDBOX_STATE_DIR"], check=True, capture_output=True
            )
            return time.perf_counter() - started

        return {
            "helpS": statistics.median(timed("--help") for _ in range(runs)),
            "orderS": statistics.median(timed("order", "--json") for _ in range(runs)),
        }


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    values = [value * scale for value in values]
    text = f"{statistics.median(values):.{digits}f}"
    return text + (f" ({min(values):.{digits}f}-{max(values):.{digits}f})" if len(values) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the other revision")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bench-orders", type=int, default=300)
    parser.add_argument("--cli-runs", type=int, default=10)
    args = parser.parse_args()
    os.chdir(tempfile.gettempdir())  # no template.yaml here: Settings.load finds the bundled demo
    sides: dict[str, Path | None] = {"before": args.before.resolve(), "now": None}
    results: dict[str, dict[str, list[float]]] = {name: {} for name in sides}

    def keep(name: str, figures: dict[str, float]) -> None:
        for key, value in figures.items():
            results[name].setdefault(key, []).append(float(value))

    for run in range(args.runs):
        for name, code in sides.items():
            print(f"run {run + 1} of {args.runs}, {name}…", file=sys.stderr)
            keep(name, first_order_and_idle(code))
            summary = bench(code, args.bench_orders, seed=run + 1)
            resources = summary.get("resources") or {}
            keep(name, {
                "terminalPerS": summary["throughput"]["completedPerSecond"],
                "p95Ms": summary["latencyMs"]["p95"],
                "cpuMsPerOrder": resources.get("cpuSecondsPerOrder", float("nan")) * 1000,
                "peakPssMb": resources.get("peakPssMb") or float("nan"),
                "pssAfterMb": resources.get("pssAfterMb") or float("nan"),
                "holds": 1.0 if summary["verdict"]["holds"] else 0.0,
            })  # fmt: skip
    for name, code in sides.items():
        keep(name, cli_times(code, args.cli_runs))

    rows: list[tuple[str, str, Callable[[list[float]], str]]] = [
        ("first order after a cold `sandbox up`, POST to COMPLETED (s)", "firstOrderS", spread),
        ("idle: engine + workers summed PSS, 15 s after that order (MB)", "idlePssMb", lambda v: spread(v, digits=0)),
        ("idle: processes (engine, worker parents, workers)", "idleProcesses", lambda v: spread(v, digits=0)),
        (f"bench {args.bench_orders} business orders from a cold up: terminal/s", "terminalPerS", lambda v: spread(v, digits=1)),
        ("bench: p95 POST to terminal (ms)", "p95Ms", lambda v: spread(v, digits=0)),
        ("bench: CPU per order, engine + workers (ms)", "cpuMsPerOrder", lambda v: spread(v, digits=0)),
        ("bench: peak summed PSS (MB)", "peakPssMb", lambda v: spread(v, digits=0)),
        ("bench: summed PSS after the burst (MB)", "pssAfterMb", lambda v: spread(v, digits=0)),
        ("bench: verdict held (runs)", "holds", lambda v: f"{int(sum(v))} of {len(v)}"),
        (f"`sandbox --help` wall clock, median of {args.cli_runs} (s)", "helpS", spread),
        (f"`sandbox order --json` wall clock on a warm engine, median of {args.cli_runs} (s)", "orderS", spread),
    ]  # fmt: skip
    print(
        f"\nMachine: {os.cpu_count()} cores; before = {args.before}, {args.runs} run(s) each, alternating\n"
    )
    print("| measure | before | now |\n|---|---|---|")
    for label, key, show in rows:
        print(f"| {label} | {show(results['before'].get(key, []) or [float('nan')])} | "
              f"{show(results['now'].get(key, []) or [float('nan')])} |")  # fmt: skip


if __name__ == "__main__":
    main()
