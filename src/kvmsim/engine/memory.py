"""A memory limit for breadth-first search: measure, predict, and say what to do.

The search asks ``MemoryGuard.check`` every ``EVERY`` new states. The measure is the process's
resident memory (``/proc/self/statm``; where that is missing, the peak from ``getrusage``).
Between two checks the visited set grows about as much as it did over the last interval, so
the guard acts when the next interval would pass the limit, not after: the search then stops
with a partial result, or (``degrade``) moves to the fingerprint store once and goes on.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import resource

EVERY = 1024  # new states between two measurements

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'2G', '500M', '1.5g', '750MB', '4096' (bytes) -> bytes; ValueError for anything else."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (write it as 500M, 2G, 1.5G...)")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise ValueError(f"not a size: {text!r} (it must be more than 0)")
    return value


def describe_size(n: float) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} bytes"


def resident_bytes() -> int:
    """The process's resident memory now (its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc's malloc_trim)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryGuard:
    """Decides, from measurements of the process, when the search must stop or degrade."""

    def __init__(self, limit: int, degrade: bool) -> None:
        self.limit = limit
        self.degrade = degrade
        self.last = resident_bytes()
        self.growth = 0

    def check(self, extra: int = 0) -> str:
        """'ok', 'degrade' (switch to fingerprints now) or 'stop'. extra: bytes about to be
        allocated at once (a store's index growing)."""
        now = resident_bytes()
        self.growth = max(0, now - self.last)
        self.last = now
        if now + self.growth + extra <= self.limit:
            return "ok"
        if self.degrade:
            self.degrade = False  # only once: after the switch, the next time is a stop
            return "degrade"
        return "stop"

    def after_degrade(self) -> None:
        release_freed_memory()
        self.last = resident_bytes()
        self.growth = 0

    def reason(self) -> str:
        return f"memory limit {describe_size(self.limit)} reached"
