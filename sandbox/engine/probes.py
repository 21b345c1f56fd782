"""What the operating system and an engine tell: processes, process groups, ports, health, logs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sandbox.errors import WaitTimeoutError
from sandbox.waiting import wait_until

PROC = Path("/proc")


def is_process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie of ours)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ... ([] when gone)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return []
    return text[text.rfind(")") + 2 :].split()


def running_group_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that still run (zombies excluded: they hold nothing); [] without /proc."""
    if not can_list_processes():
        return []
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def is_group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` still runs.

    An exited process stays a zombie until its parent reaps it; the engine's parent is init
    (the `up` that started it has ended), which may take a second or two to reap. A zombie holds
    no port, memory or file, so where /proc tells, zombies do not count.
    """
    is_process_alive(pgid)  # reaps the group's leader if it is a child of ours
    if can_list_processes():
        return bool(running_group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_process_groups(groups: Iterable[int], *, grace: float) -> None:
    """SIGTERM every group, give them ``grace`` seconds, SIGKILL what is left; return once none remains."""
    pending = set(groups)
    if not pending:
        return
    for pgid in pending:
        signal_group(pgid, signal.SIGTERM)

    def are_all_gone() -> bool:
        pending.difference_update({pgid for pgid in list(pending) if not is_group_alive(pgid)})
        return not pending

    # Short polls: a group that exits at once is seen within a few milliseconds.
    with contextlib.suppress(WaitTimeoutError):
        wait_until(are_all_gone, timeout=grace, what="the engine to exit", interval=0.01, max_interval=0.05)
    for pgid in pending:
        signal_group(pgid, signal.SIGKILL)
    # SIGKILL cannot be refused: this only waits for the kernel to end them.
    with contextlib.suppress(WaitTimeoutError):
        wait_until(are_all_gone, timeout=2, what="the engine to be killed", interval=0.01, max_interval=0.05)


def can_list_processes() -> bool:
    """Whether this OS shows every process's working folder (Linux's /proc)."""
    return (PROC / "self" / "cwd").exists()


def process_cwd(pid: int) -> Path | None:
    """The process's working folder, or None when it is gone or not ours to see."""
    try:
        return Path(os.readlink(PROC / str(pid) / "cwd"))
    except OSError:
        return None


def process_command(pid: int) -> list[str]:
    """The process's command line, or [] when it is gone or not ours to see."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def processes_in(folder: Path) -> dict[int, Path]:
    """Processes (not this one) working in ``folder`` or below it: pid -> working folder; {} without /proc."""
    if not can_list_processes():
        return {}
    folder = folder.resolve()
    found: dict[int, Path] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        cwd = process_cwd(int(entry.name))
        if cwd is not None and (cwd == folder or folder in cwd.parents):
            found[int(entry.name)] = cwd
    return found


def process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def is_port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def find_free_port() -> int:
    """A free TCP port on 127.0.0.1 (for tests and parallel engines)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_health(endpoint_url: str, health_path: str) -> dict[str, Any] | None:
    """The engine's health document ({} when not JSON), or None when it does not answer 200."""
    try:
        with urllib.request.urlopen(endpoint_url + health_path, timeout=2) as response:
            if response.status != 200:
                return None
            body = response.read()
    except (urllib.error.URLError, OSError):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def is_engine_healthy(endpoint_url: str, health_path: str) -> bool:
    """Whether the engine answers its health check."""
    return read_health(endpoint_url, health_path) is not None


def read_log_tail(log_path: str | Path, lines: int = 15) -> str:
    """The last lines of the engine log, for error messages."""
    try:
        with open(log_path, errors="replace") as log:
            return "".join(deque(log, maxlen=lines)).rstrip()
    except FileNotFoundError:
        return ""
