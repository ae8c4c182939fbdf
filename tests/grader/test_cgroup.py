"""grader.cgroup on this host's cgroup filesystem (skipped where the worker may make no cgroup)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grader import cgroup

pytestmark = pytest.mark.skipif(
    cgroup.for_slot(0) is None, reason="no memory cgroup the worker may make here"
)


def test_a_slots_limit_can_be_raised_and_lowered_again() -> None:
    # cgroup v1 refuses a memory limit above memsw (memory + swap), and memsw below the limit: each
    # change needs the two writes in the right order (the first version lowered in the wrong one).
    cg = cgroup.for_slot(0)
    assert cg is not None
    for limit in (3 << 30, 1 << 30, 2 << 30, 5 << 30):
        cg.limit(limit)
        name = "memory.limit_in_bytes" if cg.version == 1 else "memory.max"
        assert int((cg.path / name).read_text()) == limit


def test_the_cgroups_of_zygotes_that_are_gone_are_removed() -> None:
    parent = cgroup.zygote_parent()
    assert parent is not None
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = parent / f"z{int(gone.stdout)}"
    stale.mkdir(exist_ok=True)
    alive = parent / "z1"  # pid 1 always runs
    alive.mkdir(exist_ok=True)
    try:
        assert cgroup.zygote_parent() == parent
        assert not stale.exists()
        assert alive.exists()
    finally:
        for path in (stale, alive):
            if path.exists():
                path.rmdir()
