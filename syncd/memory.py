"""The process's memory: glibc's arenas capped, and freed memory handed back to the system.

With CPython on the system allocator (``syncd.__main__``), ``give_back`` after a large sync returns the
daemon to its idle RSS (docs/adr/0044).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

M_ARENA_MAX = -8
_LIBC_NAME = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_LIBC_NAME) if _LIBC_NAME and hasattr(ctypes.CDLL(_LIBC_NAME), "malloc_trim") else None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas: a 100,000-user run in one worker thread after another would
    otherwise leave its high-water mark in each thread's arena (RSS creeping up run after run)."""
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(M_ARENA_MAX, arenas)


def give_back() -> None:
    """Collect garbage, then hand every free page glibc holds back to the system (``malloc_trim``)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
