"""What the engine and its workers cost during a run, sampled from /proc."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError

SAMPLE_INTERVAL = 0.2  # seconds between samples of the engine's process tree


@dataclass(frozen=True)
class ProcessTreeSample:
    """CPU and memory of a process and all its descendants at one moment."""

    cpu_seconds: float  # user + system, including children they have reaped
    rss_bytes: int  # summed over the processes (pages they share count more than once)
    descendants: int
    # Summed proportional set size: each shared page split among its sharers, so the sum is what
    # the tree costs the machine (None where /proc has no smaps_rollup).
    pss_bytes: int | None = None


def _read_stats(proc_dir: Path) -> Iterator[tuple[int, list[str]]]:
    """(pid, fields after the command name) of every process; vanished ones are skipped."""
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # The command name is in parentheses and may itself hold spaces or parentheses.
        yield int(entry.name), text[text.rfind(")") + 2 :].split()


def read_process_tree(root_pid: int, proc_dir: Path = Path("/proc")) -> ProcessTreeSample | None:
    """CPU seconds, RSS and descendant count of ``root_pid`` and its descendants; None if it is gone."""
    stats = dict(_read_stats(proc_dir))
    if root_pid not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: the parent pid
    tree, frontier = [root_pid], [root_pid]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        tree += frontier
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    # utime, stime, cutime, cstime: a worker that exited and was reaped lives on in its parent's c*time.
    cpu = sum(sum(int(value) for value in stats[pid][11:15]) for pid in tree)
    rss = sum(int(stats[pid][21]) for pid in tree)
    pss = [_pss_bytes(proc_dir / str(pid)) for pid in tree]
    summed_pss = sum(p for p in pss if p is not None) if any(p is not None for p in pss) else None
    return ProcessTreeSample(cpu / ticks, rss * page, len(tree) - 1, summed_pss)


def _pss_bytes(process_dir: Path) -> int | None:
    """A process's proportional set size from its smaps_rollup (None when unreadable or gone)."""
    try:
        text = (process_dir / "smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024  # kB
    return None


@dataclass(frozen=True)
class ResourceUsage:
    """What the engine and its workers cost during a run."""

    cpu_seconds: float
    peak_rss_bytes: int
    peak_workers: int
    workers_before: int
    samples: int
    peak_pss_bytes: int | None = None
    pss_after_bytes: int | None = None  # at the end of the run, the burst over

    def as_dict(self, orders: int) -> dict[str, Any]:
        def mb(value: int | None) -> float | None:
            return None if value is None else round(value / 2**20, 1)

        return {
            "cpuSeconds": round(self.cpu_seconds, 2),
            "cpuSecondsPerOrder": round(self.cpu_seconds / orders, 4) if orders else None,
            "peakRssMb": round(self.peak_rss_bytes / 2**20, 1),
            "peakPssMb": mb(self.peak_pss_bytes),
            "pssAfterMb": mb(self.pss_after_bytes),
            "peakWorkers": self.peak_workers,
            "workersBefore": self.workers_before,
            "samples": self.samples,
        }


class ResourceSampler:
    """Samples a process tree every SAMPLE_INTERVAL seconds on a thread, keeping the peaks."""

    def __init__(self, root_pid: int, interval: float = SAMPLE_INTERVAL, proc_dir: Path = Path("/proc")):
        self.root_pid, self.interval, self.proc_dir = root_pid, interval, proc_dir
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-resource-sampler", daemon=True)
        self._first: ProcessTreeSample | None = None
        self._peak_rss = self._peak_workers = self._samples = 0
        self._peak_pss: int | None = None

    @property
    def samples(self) -> int:
        return self._samples

    def _sample(self) -> ProcessTreeSample | None:
        sample = read_process_tree(self.root_pid, self.proc_dir)
        if sample is not None:
            self._samples += 1
            self._peak_rss = max(self._peak_rss, sample.rss_bytes)
            self._peak_workers = max(self._peak_workers, sample.descendants)
            if sample.pss_bytes is not None:
                self._peak_pss = max(self._peak_pss or 0, sample.pss_bytes)
        return sample

    def _run(self) -> None:
        while not self._stop.wait(self.interval):  # a sampling period, not a wait for a condition
            self._sample()

    def start(self) -> None:
        self._first = self._sample()
        if self._first is None:
            raise SandboxError(f"the engine process {self.root_pid} is not running")
        self._thread.start()

    def stop(self) -> ResourceUsage:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        last = self._sample()
        first = self._first
        if first is None or last is None:
            raise SandboxError(f"the engine process {self.root_pid} exited during the run")
        return ResourceUsage(
            last.cpu_seconds - first.cpu_seconds,
            self._peak_rss,
            self._peak_workers,
            first.descendants,
            self._samples,
            self._peak_pss,
            last.pss_bytes,
        )
