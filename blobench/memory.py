"""Peak memory of the algorithm alone (design.md, Harness).

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was
allocated before. CPU (Linux): writing ``5`` to ``/proc/self/clear_refs`` resets the peak
resident set size ``VmHWM`` to the current RSS; the peak over a region minus the RSS at its
start is what the region added. Elsewhere the CPU figure is unavailable (None).
"""

from __future__ import annotations

from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _read_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Tracks the peak memory added by the measured regions, in MiB.

    Use :meth:`start` once, then wrap each measured region with :meth:`enter` / :meth:`exit`
    (evaluation between regions is not counted).
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.baseline = 0
        self.peak_bytes = 0
        self.available = True

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.baseline = torch.cuda.memory_allocated()
        else:
            rss = _read_kib("VmRSS")
            self.available = rss is not None and _CLEAR_REFS.exists()
            self.baseline = (rss or 0) * 1024

    def enter(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        elif self.available:
            try:
                _CLEAR_REFS.write_text("5")
            except OSError:
                self.available = False

    def exit(self) -> None:
        if self.cuda:
            peak = torch.cuda.max_memory_allocated()
        elif self.available:
            peak = (_read_kib("VmHWM") or 0) * 1024
        else:
            return
        self.peak_bytes = max(self.peak_bytes, peak - self.baseline)

    @property
    def peak_mib(self) -> float | None:
        if not self.available:
            return None
        return max(self.peak_bytes, 0) / 2**20
