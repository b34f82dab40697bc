"""Peak resident memory (RSS) of processes, from the kernel's high-water mark ``VmHWM`` in /proc.

``VmHWM`` is the largest resident set a process has had since it started, kept by the kernel; reading it
just before a process ends gives its peak. :class:`PeakRss` samples it on a background thread for every
process it watches, so the figure survives a process that ends (or is killed) between two looks.

    with PeakRss() as rss:
        rss.watch("worker", proc.pid)
        ...
    print(rss.peak_mib("worker"))

Linux only (``/proc``); elsewhere every figure is NaN.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")
_STATUS_KIB = re.compile(r"^(VmHWM|VmRSS):\s+(\d+) kB$", re.M)


def status_kib(pid: int | str) -> dict[str, int]:
    """``{"VmHWM": kib, "VmRSS": kib}`` of a live process (empty when it is gone or not readable)."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return {}
    return {name: int(kib) for name, kib in _STATUS_KIB.findall(text)}


def peak_mib(pid: int | str) -> float:
    """The process's peak RSS so far in MiB (NaN when it cannot be read)."""
    kib = status_kib(pid).get("VmHWM")
    return kib / 1024 if kib is not None else float("nan")


def self_peak_mib() -> float:
    """This process's own peak RSS in MiB."""
    return peak_mib("self")


def pid_listening_on(port: int) -> int | None:
    """The pid of the process on this machine that listens on TCP ``port`` (None if none is visible).

    Finds the socket inode in /proc/net/tcp{,6} in state LISTEN (0A), then the process holding it among
    the processes this user may inspect.
    """
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(entry.name)
        except OSError:
            continue
    return None


class PeakRss:
    """Samples ``VmHWM`` of named processes every ``interval`` seconds on a daemon thread."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._pids: dict[str, int] = {}
        self._peak_kib: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, name: str, pid: int) -> None:
        """Follow ``pid`` under ``name`` (a name keeps the highest peak of every pid it was given)."""
        with self._lock:
            self._pids[name] = pid
        self.sample()

    def sample(self) -> None:
        """Read every watched process now (also called before a process is stopped)."""
        with self._lock:
            for name, pid in self._pids.items():
                kib = status_kib(pid).get("VmHWM")
                if kib is not None and kib > self._peak_kib.get(name, 0):
                    self._peak_kib[name] = kib

    def peak_mib(self, name: str) -> float:
        self.sample()
        with self._lock:
            kib = self._peak_kib.get(name)
        return kib / 1024 if kib is not None else float("nan")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> PeakRss:
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling after one last look (call it before stopping the watched processes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()

    def __enter__(self) -> PeakRss:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process and of its live children (``hub worker --processes N``
    supervises N), in seconds; 0.0 for what cannot be read."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [str(pid), *(str(c) for c in children(pid))]
    for p in pids:
        try:
            fields = (PROC / p / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of stat)
    return total


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    try:
        return [int(c) for c in (PROC / str(pid) / "task" / str(pid) / "children").read_text().split()]
    except OSError:
        return []
