"""The state folder and the engine lifecycle, without an engine: record, lock, repair, refusal, stop.

Stand-in processes (a sleeping Python) play the engine and its Lambda workers: they work in the
state folder as the real ones do, which is how the sandbox finds them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.engine import (
    EmbeddedEngine,
    EngineState,
    adopt_running_engine,
    compose,
    engine_for,
    lifecycle,
    locked_state_dir,
    probes,
    read_engine_state,
    running_engine,
    stop_engine,
)
from sandbox.engine.container import ContainerEngine
from sandbox.engine.embedded import ENGINE_MODULE
from sandbox.engine.state import UnreadableStateError, load_engine_state, write_engine_state
from sandbox.errors import EngineError, EngineNotRunningError
from sandbox.settings import ENGINES, Settings

needs_proc = pytest.mark.skipif(not probes.can_list_processes(), reason="finding strays needs /proc")


@pytest.fixture(autouse=True)
def _no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Looking for container engines finds no Docker here: these tests run no docker command."""
    monkeypatch.setattr(compose, "find_executable", lambda name: None)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(state_dir=tmp_path / "state", port=45998, engine="embedded")


@pytest.fixture
def spawn(settings: Settings) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a sleeping process in a folder, in its own process group, as the engine starts its own."""
    started: list[subprocess.Popen[bytes]] = []

    def start(cwd: Path, *args: str, is_stubborn: bool = False) -> subprocess.Popen[bytes]:
        cwd.mkdir(parents=True, exist_ok=True)
        code = "import signal, time\n"
        if is_stubborn:
            code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        code += "print('ready', flush=True)\ntime.sleep(60)\n"
        process = subprocess.Popen(
            [sys.executable, "-c", code, *args], cwd=cwd, start_new_session=True, stdout=subprocess.PIPE
        )
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        started.append(process)
        return process

    yield start
    for process in started:
        probes.signal_group(process.pid, signal.SIGKILL)
        process.wait()
        if process.stdout:
            process.stdout.close()


def record(settings: Settings, pid: int | None, port: int | None = None) -> EngineState:
    state = EngineState("embedded", pid, port or settings.port, str(settings.state_dir / "engine.log"), 1.0)
    write_engine_state(settings, state)
    return state


# ---------------------------------------------------------------- the record


def test_the_record_is_replaced_whole_and_leaves_no_partial_file(settings: Settings) -> None:
    first = record(settings, 10)
    second = record(settings, 11)
    assert load_engine_state(settings) == second != first
    assert sorted(path.name for path in settings.state_dir.iterdir()) == [".gitignore", "engine.json"]


UNKNOWN_ENGINE = '{"engine": "moto", "pid": 1, "port": 1, "log_path": "l", "started_at": 0}'


@pytest.mark.parametrize("written", ["", "{not json", "[]", '{"engine": "embedded"}', UNKNOWN_ENGINE])
def test_an_unreadable_record_is_one_clear_error_that_says_run_down(settings: Settings, written: str) -> None:
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / "engine.json").write_text(written)
    with pytest.raises(UnreadableStateError):
        load_engine_state(settings)
    assert read_engine_state(settings) is None
    with pytest.raises(EngineNotRunningError, match="cannot be read") as caught:
        running_engine(settings)
    assert "sandbox down" in str(caught.value.hint)


def test_every_engine_name_has_its_kind() -> None:
    for name in ENGINES:
        engine = engine_for(Settings(engine=name))
        assert engine.kind == name
        assert isinstance(engine, EmbeddedEngine if name == "embedded" else ContainerEngine)


# ---------------------------------------------------------------- the lock


def test_taking_the_lock_writes_nothing(settings: Settings) -> None:
    with locked_state_dir(settings):
        pass
    assert list(settings.state_dir.iterdir()) == []


def test_a_second_command_says_it_waits_then_runs_once_the_first_is_done(settings: Settings) -> None:
    # GIVEN one command holds the state folder
    holding, release = threading.Event(), threading.Event()

    def first() -> None:
        with locked_state_dir(settings):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(10)
    heard: list[str] = []
    # WHEN a second one asks for it THEN it says so once, and waits until the first is done
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with locked_state_dir(settings, on_wait=heard.append):
        waited = time.monotonic() - started
    thread.join(10)
    assert heard == [f"another sandbox command holds {settings.state_dir}; waiting…"]
    assert waited >= 0.25


def test_the_lock_is_free_at_once_when_nobody_holds_it(settings: Settings) -> None:
    heard: list[str] = []
    with (
        locked_state_dir(settings, on_wait=heard.append),
        locked_state_dir(Settings.load(state_dir=settings.state_dir.parent / "other"), on_wait=heard.append),
    ):
        pass
    assert heard == []


# ---------------------------------------------------------------- repair


@needs_proc
def test_down_with_an_unreadable_record_still_finds_and_stops_the_engine(
    settings: Settings, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    # GIVEN an engine and a worker of this state folder, and a record that cannot be read
    engine = spawn(settings.state_dir, ENGINE_MODULE)  # found by its folder and its command
    worker = spawn(settings.state_dir / "tmp" / "ministack-lambda-f-1" / "code")  # by its folder
    bystander = spawn(settings.state_dir)  # a shell left in the folder, say: not the engine's
    (settings.state_dir / "engine.json").write_text("{half a rec")
    heard: list[str] = []
    # WHEN `down` runs
    stopped = stop_engine(settings, notify=heard.append)
    # THEN it says what it repaired, one line each, and nothing of the engine runs any more
    assert stopped is None
    assert heard[0].startswith(f"the engine record {settings.state_dir / 'engine.json'} cannot be read")
    assert heard[0].endswith("; removed it")
    assert sorted(heard[1:]) == sorted(
        f"stopped an engine of {settings.state_dir} that no record named (process group {process.pid})"
        for process in (engine, worker)
    )
    assert engine.wait(5) is not None and worker.wait(5) is not None
    assert not (settings.state_dir / "engine.json").exists()
    assert not (settings.state_dir / "tmp").exists()
    assert bystander.poll() is None


@needs_proc
def test_a_record_of_a_dead_engine_is_reported_and_what_it_left_is_stopped(
    settings: Settings, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    # GIVEN a record whose engine has exited, and one of its workers still running
    state = record(settings, pid=2**22 + 7)  # above the usual pid range: no such process
    worker = spawn(settings.state_dir / "tmp" / "ministack-lambda-f-2" / "code")
    heard: list[str] = []
    # WHEN `down` runs THEN one line says the engine had exited, and the worker is stopped
    assert stop_engine(settings, notify=heard.append) == state
    assert heard == [
        f"the embedded engine recorded in {settings.state_dir} (pid {state.pid}) had already exited; "
        "removing what it left"
    ]
    assert worker.wait(5) is not None
    assert read_engine_state(settings) is None


@needs_proc
def test_a_pid_reused_by_another_process_is_not_taken_for_the_engine(settings: Settings) -> None:
    # GIVEN a record naming a pid that now belongs to an unrelated process (this test's)
    state = record(settings, pid=os.getpid())
    # THEN that process is not taken for the engine, so `down` never signals it
    assert not engine_for(settings).is_alive(state)


# ---------------------------------------------------------------- one engine per state folder


@pytest.fixture
def running(settings: Settings, spawn: Callable[..., subprocess.Popen[bytes]]) -> EngineState:
    """A recorded embedded engine that runs (a process working in the state folder stands in)."""
    return record(settings, spawn(settings.state_dir).pid, port=45990)


def test_up_on_another_port_refuses_to_use_the_running_engine(
    settings: Settings, running: EngineState
) -> None:
    with pytest.raises(EngineError, match=f"runs on port {running.port}, not {settings.port}") as caught:
        lifecycle.start_engine(settings)
    assert "sandbox down" in str(caught.value.hint)
    assert "SANDBOX_STATE_DIR" in str(caught.value.hint)


def test_a_plain_up_adopts_the_running_engines_port(
    settings: Settings, running: EngineState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SANDBOX_PORT", raising=False)
    monkeypatch.delenv("SANDBOX_ENGINE", raising=False)
    assert adopt_running_engine(settings, is_chosen=False).port == running.port
    assert adopt_running_engine(settings, is_chosen=False, is_port_chosen=True).port == settings.port


@needs_proc
def test_stop_ends_a_group_that_ignores_sigterm_quickly(
    settings: Settings, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    # GIVEN an engine that ignores SIGTERM, with a worker in its temp folder
    engine = spawn(settings.state_dir, is_stubborn=True)
    state = record(settings, engine.pid)
    (settings.state_dir / "tmp" / "ministack-lambda-f-3").mkdir(parents=True)
    # WHEN it is stopped
    started = time.monotonic()
    stop_engine(settings)
    # THEN it is killed after a short grace, and its temp folder is gone
    assert time.monotonic() - started < 2
    engine.wait(5)  # (stop may have reaped it already: it is a child of this test)
    assert not probes.is_process_alive(engine.pid)
    assert probes.running_group_members(state.pid or 0) == []
    assert not (settings.state_dir / "tmp").exists()
