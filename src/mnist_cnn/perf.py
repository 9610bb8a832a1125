"""Process-wide CPU settings for a run: torch threads and how freed memory is kept."""

from __future__ import annotations

import ctypes
import os
import sys

import torch

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def set_threads(threads: int | str, parallel_jobs: int = 1) -> int:
    """threads='auto' gives each of parallel_jobs runs an equal share of the cores."""
    if threads == "auto":
        threads = max(1, (os.cpu_count() or 1) // max(1, parallel_jobs))
    torch.set_num_threads(threads)
    return threads


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Let glibc reuse freed blocks up to limit_bytes instead of handing them back to the kernel.

    A training step frees and re-allocates the same activations (11 MB for conv1's output at batch
    128). By default glibc serves blocks that size with fresh mmap()s and unmaps them on free, so
    every step pays page faults and the kernel zeroing the pages again: measured here, ~30% of a
    CPU training step. Raising the mmap and trim thresholds keeps those pages in the process.
    Numerics are untouched. Returns False where there is no glibc (macOS, musl): nothing changes.
    jemalloc or tcmalloc through LD_PRELOAD do the same, but need a system package and an
    environment set before Python starts.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, limit_bytes)) and bool(
        mallopt(_M_TRIM_THRESHOLD, limit_bytes)
    )
