"""A seccomp-bpf deny-list for sandboxed student code, compiled to raw classic BPF in pure Python.

bubblewrap's `--seccomp FD` takes exactly this format (an array of `struct sock_filter`, as
`seccomp_export_bpf` writes it), so no libseccomp binding is needed. The filter is a deny-list: it
blocks the syscalls that only matter for escaping or attacking the host (mounts, namespaces, ptrace,
kernel modules, keyrings, bpf, io_uring, ...) and IP sockets, and allows everything a Python/PyTorch
program normally uses. Blocked calls fail with EPERM (ENOSYS for clone3, so libc falls back to clone,
whose flags *can* be inspected); a foreign architecture or the x32 ABI kills the process.
"""

from __future__ import annotations

import platform
import struct
from typing import Any

# BPF instruction classes/modes (linux/filter.h, linux/bpf_common.h)
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000
_EPERM = 1
_ENOSYS = 38

# struct seccomp_data offsets: nr (int), arch (u32), instruction_pointer (u64), args[6] (u64 each)
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LO = 16

_CLONE_NS_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
_BLOCKED_SOCKET_FAMILIES = (2, 10, 17)  # AF_INET, AF_INET6, AF_PACKET

_ARCHES: dict[str, dict[str, object]] = {
    "x86_64": {
        "audit_arch": 0xC000003E,
        "x32_bit": 0x40000000,
        "socket": 41,
        "clone": 56,
        "clone3": 435,
        "denied": {
            "ptrace": 101,
            "syslog": 103,
            "uselib": 134,
            "personality": 135,
            "ustat": 136,
            "sysfs": 139,
            "vhangup": 153,
            "pivot_root": 155,
            "_sysctl": 156,
            "adjtimex": 159,
            "chroot": 161,
            "acct": 163,
            "settimeofday": 164,
            "mount": 165,
            "umount2": 166,
            "swapon": 167,
            "swapoff": 168,
            "reboot": 169,
            "iopl": 172,
            "ioperm": 173,
            "create_module": 174,
            "init_module": 175,
            "delete_module": 176,
            "get_kernel_syms": 177,
            "query_module": 178,
            "quotactl": 179,
            "nfsservctl": 180,
            "lookup_dcookie": 212,
            "clock_settime": 227,
            "kexec_load": 246,
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
            "unshare": 272,
            "perf_event_open": 298,
            "name_to_handle_at": 303,
            "open_by_handle_at": 304,
            "clock_adjtime": 305,
            "setns": 308,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "kcmp": 312,
            "finit_module": 313,
            "kexec_file_load": 320,
            "bpf": 321,
            "userfaultfd": 323,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "fspick": 433,
            "pidfd_getfd": 438,
            "mount_setattr": 442,
        },
    },
    "aarch64": {
        "audit_arch": 0xC00000B7,
        "x32_bit": None,
        "socket": 198,
        "clone": 220,
        "clone3": 435,
        "denied": {
            "ptrace": 117,
            "syslog": 116,
            "personality": 92,
            "vhangup": 58,
            "pivot_root": 41,
            "adjtimex": 171,
            "chroot": 51,
            "acct": 89,
            "settimeofday": 170,
            "mount": 40,
            "umount2": 39,
            "swapon": 224,
            "swapoff": 225,
            "reboot": 142,
            "init_module": 105,
            "delete_module": 106,
            "quotactl": 60,
            "lookup_dcookie": 18,
            "clock_settime": 112,
            "kexec_load": 104,
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
            "unshare": 97,
            "perf_event_open": 241,
            "name_to_handle_at": 264,
            "open_by_handle_at": 265,
            "clock_adjtime": 266,
            "setns": 268,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "kcmp": 272,
            "finit_module": 273,
            "kexec_file_load": 294,
            "bpf": 280,
            "userfaultfd": 282,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "fspick": 433,
            "pidfd_getfd": 438,
            "mount_setattr": 442,
        },
    },
}


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def denied_syscalls(machine: str | None = None) -> dict[str, int]:
    """The syscalls the filter blocks on this architecture (name -> number)."""
    arch = _ARCHES[machine or platform.machine()]
    return dict(arch["denied"])  # type: ignore[call-overload]


def supported(machine: str | None = None) -> bool:
    return (machine or platform.machine()) in _ARCHES


def build_filter(machine: str | None = None) -> bytes:
    """Compile the deny-list for `machine` (default: this host) into raw BPF instructions."""
    arch = _ARCHES[machine or platform.machine()]
    denied: dict[str, int] = arch["denied"]  # type: ignore[assignment]
    errno_eperm = _RET_ERRNO | _EPERM

    # Program layout: tail holds the return blocks; jumps are relative offsets to them.
    body: list[tuple[Any, ...]] = []
    body.append((_LD_W_ABS, 0, 0, _OFF_ARCH))
    body.append(("jne_kill", arch["audit_arch"]))  # type: ignore[arg-type]
    body.append((_LD_W_ABS, 0, 0, _OFF_NR))
    if arch["x32_bit"] is not None:
        body.append(("jge_kill", arch["x32_bit"]))  # type: ignore[arg-type]
    for nr in sorted(denied.values()):
        body.append(("jeq_eperm", nr))  # type: ignore[arg-type]
    body.append(("jeq_enosys", arch["clone3"]))  # type: ignore[arg-type]
    body.append(("jeq_to_clone", arch["clone"]))  # type: ignore[arg-type]
    body.append(("jeq_to_socket", arch["socket"]))  # type: ignore[arg-type]
    body.append((_RET_K, 0, 0, _RET_ALLOW))
    # clone: inspect flags (arg0, low 32 bits)
    clone_at = len(body)
    body.append((_LD_W_ABS, 0, 0, _OFF_ARG0_LO))
    body.append(("jset_eperm", _CLONE_NS_FLAGS))
    body.append((_RET_K, 0, 0, _RET_ALLOW))
    # socket: inspect the address family (arg0)
    socket_at = len(body)
    body.append((_LD_W_ABS, 0, 0, _OFF_ARG0_LO))
    for fam in _BLOCKED_SOCKET_FAMILIES:
        body.append(("jeq_eperm", fam))
    body.append((_RET_K, 0, 0, _RET_ALLOW))
    eperm_at = len(body)
    body.append((_RET_K, 0, 0, errno_eperm))
    enosys_at = len(body)
    body.append((_RET_K, 0, 0, _RET_ERRNO | _ENOSYS))
    kill_at = len(body)
    body.append((_RET_K, 0, 0, _RET_KILL_PROCESS))

    out = bytearray()
    for i, ins in enumerate(body):
        if isinstance(ins[0], int):
            out += _ins(*ins)  # type: ignore[arg-type]
            continue
        kind, k = ins
        assert isinstance(k, int)

        def rel(target: int, i: int = i) -> int:
            off = target - i - 1
            if not 0 <= off < 256:
                raise ValueError("BPF jump out of range")
            return off

        if kind == "jne_kill":
            out += _ins(_JEQ_K, 0, rel(kill_at), k)
        elif kind == "jge_kill":
            out += _ins(_JGE_K, rel(kill_at), 0, k)
        elif kind == "jeq_eperm":
            out += _ins(_JEQ_K, rel(eperm_at), 0, k)
        elif kind == "jset_eperm":
            out += _ins(_JSET_K, rel(eperm_at), 0, k)
        elif kind == "jeq_enosys":
            out += _ins(_JEQ_K, rel(enosys_at), 0, k)
        elif kind == "jeq_to_clone":
            out += _ins(_JEQ_K, rel(clone_at), 0, k)
        elif kind == "jeq_to_socket":
            out += _ins(_JEQ_K, rel(socket_at), 0, k)
        else:  # pragma: no cover - programming error
            raise AssertionError(kind)
    return bytes(out)
