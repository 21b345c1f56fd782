"""`sandbox status`'s memory line: summed RSS and PSS of the engine's process and its workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from cli.engine_commands import _describe_memory, _memory
from sandbox.engine import EngineState


def state_of(pid: int | None) -> EngineState:
    return EngineState(engine="embedded", pid=pid, port=4566, log_path="engine.log", started_at=time.time())


@pytest.fixture
def engine_with_two_workers() -> Iterator[int]:
    """A process standing for the engine, with two children standing for its Lambda workers."""
    code = (
        "import subprocess, sys, time\n"
        "workers = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']) for _ in range(2)]\n"
        "print(*(worker.pid for worker in workers), flush=True)\n"
        "time.sleep(60)\n"
    )
    engine = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        assert engine.stdout is not None
        workers = [int(pid) for pid in engine.stdout.readline().split()]
        yield engine.pid
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        engine.kill()
        engine.wait()


def test_memory_sums_the_engine_and_its_workers(engine_with_two_workers: int) -> None:
    # GIVEN an engine process with two workers WHEN status measures it
    memory = _memory(state_of(engine_with_two_workers))
    # THEN both figures cover three Python processes, and PSS (shared pages split) is below RSS
    assert memory is not None
    assert memory["workers"] == 2
    assert memory["rssMb"] > 3 * 5  # three interpreters, each well over 5 MB resident
    if memory["pssMb"] is not None:  # /proc without smaps_rollup: RSS alone
        assert 0 < memory["pssMb"] < memory["rssMb"]


def test_a_container_engine_or_a_vanished_process_has_no_memory_line() -> None:
    assert _memory(state_of(None)) is None
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert _memory(state_of(gone.pid)) is None


def test_the_memory_line_names_both_figures_and_the_workers() -> None:
    line = _describe_memory({"rssMb": 412.4, "pssMb": 203.0, "workers": 7})
    assert line == "RSS 412 MB, PSS 203 MB (the engine and 7 processes under it)"
    assert (
        _describe_memory({"rssMb": 60.0, "pssMb": None, "workers": 1})
        == "RSS 60 MB (the engine and 1 process under it)"
    )
