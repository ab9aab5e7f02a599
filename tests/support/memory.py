"""Memory measurements of node processes (/proc): current and peak RSS, the node PIDs."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.support.logfed import AIZU, TAKAMATSU, LogFederation


def proc_status(pid: int, key: str) -> int:
    """``key`` (VmRSS, VmHWM) of process ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


class PeakMeter:
    """The most RSS a process reached during a block: VmHWM after a reset, else sampled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sampled = max(self.sampled, proc_status(self.pid, "VmRSS"))
            self._stop.wait(0.01)

    def __enter__(self) -> PeakMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak(self) -> int:
        if self.hwm_reset:
            return max(self.sampled, proc_status(self.pid, "VmHWM"))
        return self.sampled


def pids(lf: LogFederation) -> dict[str, int]:
    return {name: lf.fed.processes[f"node-{name}"].pid for name in (AIZU, TAKAMATSU)}
