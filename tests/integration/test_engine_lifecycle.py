"""One engine per state folder, whatever happens to it: two `up` at once, a dead engine, a damaged record.

Each test runs the `sandbox` console script against its own state folder and port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.clients import make_client
from sandbox.engine import find_free_port, probes
from sandbox.engine.embedded import ENGINE_MODULE
from sandbox.waiting import wait_until
from tests.integration.test_cli import Cli
from tests.processes import CLI_TIMEOUT, SANDBOX, finish

pytestmark = pytest.mark.integration


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Cli]:
    cli = Cli(find_free_port(), tmp_path / "state")
    yield cli
    cli.run("down")


def state_dir_of(cli: Cli) -> Path:
    return Path(cli.env["SANDBOX_STATE_DIR"])


def engine_pid(cli: Cli) -> int:
    return int(json.loads((state_dir_of(cli) / "engine.json").read_text())["pid"])


def engines_in(state_dir: Path) -> list[int]:
    """Engine processes working in the state folder (as `down` finds them)."""
    folder = state_dir.resolve()
    return [
        pid
        for pid, cwd in probes.processes_in(folder).items()
        if cwd == folder and ENGINE_MODULE in probes.process_command(pid)
    ]


def assert_nothing_left(cli: Cli, pid: int) -> None:
    """No process of the engine's group runs, and its temp folder is gone."""
    assert probes.running_group_members(pid) == []
    assert engines_in(state_dir_of(cli)) == []
    assert not (state_dir_of(cli) / "tmp").exists()


def test_two_ups_at_once_start_one_engine_and_deploy_one_stack(runner: Cli) -> None:
    # WHEN two `sandbox up` start at the same moment, on the same state folder and port
    processes = [
        subprocess.Popen(
            [SANDBOX, "up"], env=runner.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    first, second = (
        finish(process, timeout=CLI_TIMEOUT, what="two `sandbox up` at once") for process in processes
    )
    # THEN both succeed: one started the engine and deployed, the other waited and found both done
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    outputs = sorted([first, second], key=lambda result: "already running" in result.stdout)
    starter, waiter = outputs
    assert "engine embedded started" in starter.stdout and "stack saga-sandbox deployed" in starter.stdout
    assert "engine embedded already running" in waiter.stdout and "unchanged" in waiter.stdout
    assert f"another sandbox command holds {state_dir_of(runner)}; waiting…" in waiter.stderr
    assert "Traceback" not in starter.stderr + waiter.stderr
    # AND there is one engine, the one the record names, with one stack on it
    pid = engine_pid(runner)
    if probes.can_list_processes():
        assert engines_in(state_dir_of(runner)) == [pid]
    cfn = make_client(
        "cloudformation", endpoint_url=f"http://127.0.0.1:{runner.env['SANDBOX_PORT']}", region="us-east-1"
    )
    stacks = [
        summary["StackName"]
        for summary in cfn.list_stacks()["StackSummaries"]
        if summary["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert stacks == ["saga-sandbox"]
    # AND `down` stops it, leaving nothing behind
    down = runner.run("down")
    assert down.returncode == 0 and f"pid {pid}" in down.stdout
    assert_nothing_left(runner, pid)


@pytest.mark.skipif(
    not probes.can_list_processes(), reason="finding an engine without its record needs /proc"
)
def test_a_damaged_record_is_reported_and_down_still_stops_the_engine(runner: Cli) -> None:
    # GIVEN a running engine with Lambda workers, whose record gets damaged
    assert runner.run("up").returncode == 0
    assert runner.run("order").returncode == 0
    pid = engine_pid(runner)
    (state_dir_of(runner) / "engine.json").write_text('{"engine": "embe')
    # WHEN a command needs the engine THEN one line says the record cannot be read, and to run `down`
    order = runner.run("order")
    assert order.returncode == 1
    assert "cannot be read" in order.stderr and "sandbox down" in order.stderr
    assert "Traceback" not in order.stderr
    # WHEN `down` runs THEN it says what it repaired and stops the engine all the same
    down = runner.run("down")
    assert down.returncode == 0, down.stderr
    assert "cannot be read" in down.stderr and "removed it" in down.stderr
    assert f"that no record named (process group {pid})" in down.stderr
    assert_nothing_left(runner, pid)


def test_down_after_the_engine_died_says_so_and_stops_what_it_left(runner: Cli) -> None:
    # GIVEN the engine process was killed (not its Lambda workers)
    assert runner.run("up").returncode == 0
    assert runner.run("order").returncode == 0
    pid = engine_pid(runner)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: pid not in probes.running_group_members(pid) if probes.can_list_processes()
               else not probes.is_process_alive(pid), timeout=10, what="the engine to die")  # fmt: skip
    # WHEN `down` runs THEN one line says the engine had exited, and nothing of it is left
    down = runner.run("down")
    assert down.returncode == 0, down.stderr
    assert f"(pid {pid}) had already exited" in down.stderr
    assert "Traceback" not in down.stderr
    assert_nothing_left(runner, pid)
    assert runner.run("down").stdout.strip() == "no sandbox engine was running"
