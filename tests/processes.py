"""Waiting for `sandbox` subprocesses in tests: finite, generous bounds that name what was awaited.

On a slow machine (two cores shared with an engine, its Lambda workers and other test runs) the
CLI's start-up and exit take several times longer than on an idle one, so the bounds are generous.
They stay finite, so a real hang still fails: the process is killed and its output shown.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from sandbox.errors import WaitTimeoutError
from sandbox.waiting import wait_until

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
CLI_TIMEOUT = 120.0  # one CLI command, start to end


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def describe(args: list[str] | tuple[str, ...]) -> str:
    """The command as a person would type it."""
    return " ".join(["sandbox", *(str(arg) for arg in args)])


def run_sandbox(
    *args: str, env: Mapping[str, str], timeout: float = CLI_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run `sandbox ARGS` to the end; past ``timeout`` it is killed and the test fails saying so."""
    try:
        return subprocess.run(
            [SANDBOX, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"`{describe(args)}` had not finished after {timeout:g}s and was killed\n"
            f"--- stdout\n{_text(expired.stdout)}\n--- stderr\n{_text(expired.stderr)}",
            pytrace=False,
        )


def finish(process: subprocess.Popen[str], *, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """The result of a process started with pipes; past ``timeout`` it is killed and the test fails."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(
            f"timed out after {timeout:g}s waiting for {what}: the process was still running (killed)\n"
            f"--- stdout\n{_text(stdout)}\n--- stderr\n{_text(stderr)}",
            pytrace=False,
        )
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def as_from_a_terminal() -> None:
    """In a child before it runs: SIGINT handled as a terminal's Ctrl-C is, whatever this run inherited
    (`nohup make test`, or a CI runner, starts with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def started_sandbox(*args: str, env: Mapping[str, str], output: Path) -> Iterator[subprocess.Popen[str]]:
    """`sandbox ARGS` in the background, stdout and stderr into ``output``; killed if still running after."""
    with output.open("w") as sink:
        process = subprocess.Popen(
            [SANDBOX, *args],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=as_from_a_terminal,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def wait_for_output(
    process: subprocess.Popen[str], output: Path, text: str, *, timeout: float, what: str
) -> None:
    """Wait until ``text`` is in the process's output; fail at once if the process exits without it."""

    def has_text() -> bool:
        if text in output.read_text():
            return True
        if process.poll() is not None and text not in output.read_text():
            pytest.fail(
                f"waiting for {what}: `{describe(process.args[1:])}` exited with code {process.returncode} "
                f"without printing {text!r}\n--- output\n{output.read_text()}",
                pytrace=False,
            )
        return False

    try:
        wait_until(has_text, timeout=timeout, what=what, max_interval=0.2)
    except WaitTimeoutError as error:
        pytest.fail(
            f"{error}: no {text!r} in the output of `{describe(process.args[1:])}`\n"
            f"--- output\n{output.read_text()}",
            pytrace=False,
        )


def wait_for_exit(process: subprocess.Popen[str], output: Path, *, timeout: float, what: str) -> int:
    """The exit code; past ``timeout`` the process is killed and the test fails saying what it waited for."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(
            f"timed out after {timeout:g}s waiting for {what}: `{describe(process.args[1:])}` "
            f"was still running (killed)\n--- output\n{output.read_text()}",
            pytrace=False,
        )
