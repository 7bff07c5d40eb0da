"""Cap glibc's malloc arenas so a long-running process's memory levels off.

glibc gives a thread that finds the main arena busy an arena of its own (up to eight per
core) and keeps most of each arena's pages once freed. A server whose database and
resolver threads come and go then grows by megabytes a minute for tens of minutes before it
levels off (the soak benchmark in the README shows it). The hot paths run on the event
loop's one thread, so two arenas cost nothing measurable and keep the ceiling low.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number
ENVIRONMENT_VARIABLE = "MALLOC_ARENA_MAX"


def cap_malloc_arenas(limit: int) -> bool:
    """Cap this process (and the processes it starts) at ``limit`` arenas.

    A ``MALLOC_ARENA_MAX`` already in the environment wins: glibc read it at start-up and
    the operator chose it. ``limit`` 0 leaves glibc's default. Returns whether the cap was
    set here (False also where the C library is not glibc).
    """
    if limit <= 0 or os.environ.get(ENVIRONMENT_VARIABLE):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(M_ARENA_MAX, limit) != 1:
        return False
    os.environ[ENVIRONMENT_VARIABLE] = str(limit)  # --processes children start capped too
    return True
