"""The malloc arena cap that ``serve`` and ``worker`` set at start-up (hookline.memory).

Each case runs in a fresh interpreter: the cap is process-wide and sticks once set.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import os; from hookline.memory import cap_malloc_arenas as cap; "
    "print(cap({limit}), os.environ.get('MALLOC_ARENA_MAX'))"
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only"
)


def probe(limit: int, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(limit=limit)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_cap_is_set_and_handed_to_child_processes() -> None:
    # True: glibc's mallopt accepted it; the variable makes spawned children start capped.
    assert probe(2) == "True 2"


def test_an_operators_malloc_arena_max_wins() -> None:
    assert probe(2, MALLOC_ARENA_MAX="4") == "False 4"


def test_zero_leaves_glibcs_default() -> None:
    assert probe(0) == "False None"
