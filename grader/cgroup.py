"""One memory limit for a whole evaluation: a memory cgroup around its process tree.

The harness's RLIMIT_AS bounds each process of an evaluation, and RLIMIT_NPROC how many it may
start, so without a cgroup an evaluation that forks can hold `max_processes` times the memory limit,
and what it writes to its /tmp tmpfs counts against no limit at all (a probe held 5.5 GB of RSS and
750 MB of tmpfs with a 2 GB limit, and was graded). A memory cgroup charges every page of the
evaluation's process tree, tmpfs pages included, to one limit.

The cgroups live under the worker's own memory cgroup, in `hwgrade/`. The warm pool's zygote moves
itself, once, into `hwgrade/zygotes/z<its pid>`, and forks every evaluation inside it; each request
sets that cgroup's limit to what it holds then plus the evaluation's limit (a worker process grades
one submission at a time; see _Cgroup in grader/harness/zygote.py for why evaluations are not moved
into cgroups of their own). The cold sandbox uses one cgroup per uid slot, `hwgrade/slot-<n>`,
which its process joins before it execs. Either way the limit is set before any student code runs,
and everything the evaluation starts inherits the cgroup.
Works with cgroup v1 (a `memory` hierarchy) and with cgroup v2 where the worker's
cgroup may enable the memory controller for its children; otherwise `for_slot` is None and the
per-process limits are all there is (the report then does not claim one limit per evaluation).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path(os.environ.get("HWGRADE_CGROUP_ROOT", "/sys/fs/cgroup"))
PARENT_NAME = "hwgrade"


@dataclass(frozen=True)
class SlotCgroup:
    path: Path
    version: int  # 1 or 2

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def limit(self, limit_bytes: int) -> int:
        """Set the limit for the next evaluation (no swap beyond it); returns the OOM-kill count so far,
        to compare with oom_kills() afterwards. OSError if the limit cannot be set."""
        if self.version == 1:
            memsw = self.path / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                # memsw (memory + swap) must stay >= the limit: when the limit grows, memsw is raised
                # first; when it shrinks, the limit is lowered first (else EINVAL).
                current = int((self.path / "memory.limit_in_bytes").read_text())
                grows = limit_bytes > current
                order = (
                    [memsw.name, "memory.limit_in_bytes"] if grows else ["memory.limit_in_bytes", memsw.name]
                )
                for name in order:
                    (self.path / name).write_text(str(limit_bytes))
            else:
                (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        else:
            (self.path / "memory.max").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):  # absent where the kernel has no swap accounting
                (self.path / "memory.swap.max").write_text("0")
        return self.oom_kills()

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has killed in this cgroup, ever."""
        return oom_kills_at(self.path, self.version)


@dataclass(frozen=True)
class Limited:
    """A cgroup limited for one evaluation, and its OOM-kill count before that evaluation."""

    path: Path
    version: int
    oom_base: int


def report(limited: Limited | None) -> tuple[bool, bool]:
    """(the evaluation ran under one cgroup limit, the kernel OOM-killed a process of it since)."""
    if limited is None:
        return False, False
    return True, oom_kills_at(limited.path, limited.version) > limited.oom_base


def oom_kills_at(path: Path, version: int) -> int:
    """How many processes the kernel's OOM killer has killed in the memory cgroup `path`, ever."""
    name = "memory.oom_control" if version == 1 else "memory.events"
    try:
        text = (path / name).read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


def _own_cgroup() -> tuple[Path, int] | None:
    """This process's memory cgroup directory and the cgroup version it is under, if any."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/"), 1
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            return CGROUP_ROOT / path.lstrip("/"), 2
    return None


@cache
def _parent() -> tuple[Path, int] | None:
    """`hwgrade` under this process's memory cgroup, made if needed and able to hold limited
    children; None where this process may not make one (no cgroup fs, read-only, not root)."""
    own = _own_cgroup()
    if own is None:
        return None
    base, version = own
    parent = base / PARENT_NAME
    try:
        parent.mkdir(exist_ok=True)
        if version == 1:
            if not (parent / "memory.limit_in_bytes").exists():
                return None
        else:
            # The memory controller must be on for the slots (its own processes stay in `base`).
            if "memory" not in (base / "cgroup.subtree_control").read_text().split():
                (base / "cgroup.subtree_control").write_text("+memory")
            if "memory" not in (parent / "cgroup.controllers").read_text().split():
                return None
            if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                (parent / "cgroup.subtree_control").write_text("+memory")
    except OSError as e:
        log.info("no memory cgroup for the sandbox (%s): each process has its own memory limit only", e)
        return None
    return parent, version


@cache
def _slot(number: int) -> SlotCgroup | None:
    parent = _parent()
    if parent is None:
        return None
    path = parent[0] / f"slot-{number}"
    try:
        path.mkdir(exist_ok=True)
    except OSError as e:
        log.warning("could not make the memory cgroup %s: %s", path, e)
        return None
    return SlotCgroup(path, parent[1])


def forget_slots() -> None:
    """Make each slot's cgroup again at its next use (one was removed under this process, say)."""
    _slot.cache_clear()


def version() -> int:
    parent = _parent()
    return parent[1] if parent is not None else 0


def _enabled() -> bool:
    return os.environ.get("HWGRADE_SANDBOX_CGROUP", "auto") != "off"


def zygote_parent() -> Path | None:
    """Where a zygote makes its cgroup (`hwgrade/zygotes`), with those left by zygotes that are gone
    removed; None where the worker may make none."""
    parent = _parent() if _enabled() else None
    if parent is None:
        return None
    path = parent[0] / "zygotes"
    try:
        path.mkdir(exist_ok=True)
        if parent[1] == 2 and "memory" not in (path / "cgroup.subtree_control").read_text().split():
            (path / "cgroup.subtree_control").write_text("+memory")
        with os.scandir(path) as entries:
            stale = [e.path for e in entries if e.is_dir() and not _zygote_alive(e.name)]
    except OSError as e:
        log.warning("no memory cgroups for the warm pool (%s): each process has its own limit only", e)
        return None
    for gone in stale:
        with contextlib.suppress(OSError):  # still holding a process: left for a later sweep
            os.rmdir(gone)
    return path


def _zygote_alive(name: str) -> bool:
    """Whether the zygote of the cgroup `name` ("z<pid>") still runs."""
    pid = name[1:]
    if not (name.startswith("z") and pid.isdigit()):
        return True  # not ours to remove
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def for_slot(number: int) -> SlotCgroup | None:
    """The memory cgroup of uid slot `number`, or None where this host gives the worker none."""
    return _slot(number) if _enabled() else None


def join(procs_file: str) -> None:
    """Move the calling process into the cgroup of `procs_file` (run in a child before it execs)."""
    fd = os.open(procs_file, os.O_WRONLY)
    try:
        os.write(fd, b"0")  # "0": the writing process itself
    finally:
        os.close(fd)
