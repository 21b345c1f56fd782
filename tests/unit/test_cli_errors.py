"""The CLI's error boundary without an engine: one readable line, exit 1, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.processes import finish

SANDBOX = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "sandbox"
# The error boundary is checked through the real console script; the rest runs in-process
# (each subprocess costs ~0.6 s of interpreter and boto3 start-up).
COMMANDS = {
    "order": ["order"],
    "order_fail_bogus": ["order", "--fail", "bogus"],
    "up_without_docker": ["up", "--engine", "ministack-docker"],
}


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed on exit: nothing listens there


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each command run once through the installed script, all at the same time."""
    if not SANDBOX.exists():
        pytest.skip(f"{SANDBOX} is not installed")
    state_dir = tmp_path_factory.mktemp("empty-state")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SANDBOX_", "AWS_"))}
    env.update(SANDBOX_STATE_DIR=str(state_dir), SANDBOX_PORT=str(unused_port()), COLUMNS="120", NO_COLOR="1")
    # No Docker daemon for `up --engine ministack-docker`, whether or not this machine runs one.
    env["DOCKER_HOST"] = f"unix://{state_dir}/no-docker.sock"
    processes = {
        name: subprocess.Popen(
            [str(SANDBOX), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        for name, args in COMMANDS.items()
    }
    try:
        # Generous: three interpreters start at once, on a machine that may be busy.
        results = {
            name: finish(process, timeout=120, what=f"`sandbox {' '.join(COMMANDS[name])}` without an engine")
            for name, process in processes.items()
        }
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    assert not any(state_dir.iterdir()), "a command without an engine wrote engine state"
    return results


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_order_without_an_engine_says_to_run_sandbox_up(runs: dict) -> None:
    # GIVEN no engine was started WHEN placing an order
    run = runs["order"]
    # THEN it exits 1 with one error line and a hint naming the fix, and no traceback
    assert run.returncode == 1
    (line,) = error_lines(run.stderr)
    assert "no sandbox engine is running" in line
    assert "`sandbox up`" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert run.stdout == ""


def test_order_with_an_unknown_fail_step_names_the_steps(runs: dict) -> None:
    run = runs["order_fail_bogus"]
    assert run.returncode == 1
    (line,) = error_lines(run.stderr)
    assert "bogus" in line
    for step in ("inventory", "payment", "shipping"):
        assert step in line
    assert "Traceback" not in run.stderr + run.stdout


@pytest.fixture
def run_main(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the console entry point in-process: (exit code, stdout, stderr)."""
    from cli.app import main

    monkeypatch.setenv("SANDBOX_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SANDBOX_PORT", str(unused_port()))

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["sandbox", *args])
        with pytest.raises(SystemExit) as caught:
            main()
            raise SystemExit(0)
        captured = capsys.readouterr()
        code = caught.value.code
        return (code if isinstance(code, int) else (0 if code is None else 1)), captured.out, captured.err

    return run


def test_help_lists_every_command(run_main: Any) -> None:
    code, stdout, _ = run_main("--help")
    assert code == 0
    first_words = {line.strip("│| ").split(" ")[0] for line in stdout.splitlines() if line.strip("│| ")}
    assert {"up", "down", "status", "order", "orders"} <= first_words


def test_status_json_without_an_engine_reports_it_not_running(run_main: Any, tmp_path: Path) -> None:
    # GIVEN an empty state folder WHEN asking for the status as JSON
    code, stdout, stderr = run_main("status", "--json")
    # THEN it is one JSON document saying nothing runs, and it is not an error
    assert code == 0
    report = json.loads(stdout)
    assert report["engine"] == {"running": False}
    assert report["stack"] == {"deployed": False}
    assert "Traceback" not in stderr
    assert not any(tmp_path.iterdir())


def test_in_process_usage_errors_use_the_same_boundary(run_main: Any) -> None:
    code, stdout, stderr = run_main("order", "--item", "teapot:lots")
    assert code == 1
    (line,) = error_lines(stderr)
    assert "quantity 'lots' is not a whole number" in line
    assert stdout == ""


def test_up_on_a_container_engine_without_docker_says_so_in_one_line(runs: dict) -> None:
    run = runs["up_without_docker"]
    assert run.returncode == 1
    (line,) = error_lines(run.stderr)
    # no daemon behind DOCKER_HOST, or no Docker CLI at all: either way one line that says so
    assert "no Docker daemon is answering" in line or "Docker is not installed" in line
    hints = [text for text in run.stderr.splitlines() if text.startswith("hint:")]
    assert hints and "sandbox up --engine embedded" in hints[0]
    assert "Traceback" not in run.stderr + run.stdout


def test_up_with_an_unknown_engine_is_a_usage_error(run_main: Any) -> None:
    code, _, stderr = run_main("up", "--engine", "moto")
    assert code == 1
    (line,) = error_lines(stderr)
    assert "unknown engine 'moto'" in line
    assert "embedded, localstack, ministack-docker" in stderr


def test_up_help_documents_the_engine_flag(run_main: Any) -> None:
    code, stdout, _ = run_main("up", "--help")
    assert code == 0
    assert "--engine" in stdout
    for engine in ("embedded", "localstack", "ministack-docker", "SANDBOX_ENGINE"):
        assert engine in stdout
