"""The default seccomp filter: built once with libseccomp, installed in the container as raw BPF.

Policy: default allow, with a deny list of the syscalls that reach past a container (kernel modules,
kexec, mount and namespace calls, keyrings, the clock, swap, reboot, BPF, perf, open_by_handle_at...),
each answering EPERM; mknod of character and block devices refused (there is no device cgroup, so
this is what keeps CAP_MKNOD from reaching the host's disks); and clone3 answering ENOSYS so that glibc
falls back to clone, whose namespace flags are then refused. Why a deny list rather than Docker's allow list: HPC codes and new C libraries
use syscalls a fixed allow list does not know yet (RDMA verbs, io_uring, new memory calls), and an allow
list breaks them with EPERM in ways users cannot diagnose; the deny list closes the known escapes, and
the dropped capabilities close the rest (most denied calls also need capabilities the container lacks).

The filter is compiled to BPF once per host and cached (`program()`), so a launch reads a file and the
child only makes one prctl. If libseccomp cannot be loaded, `availability()` says so and `program()` raises: a launch
asking for seccomp never runs without it silently.
"""

from __future__ import annotations

import ctypes
import errno
import os
import zlib
from functools import lru_cache

from engine.errors import LaunchError

CACHE_DIR = "/run/rade/seccomp"
POLICY_VERSION = 1  # bump when the rules below change in a way the hash of their names would miss

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7
SCMP_ARCH_X86 = 0x40000003
S_IFMT, S_IFCHR, S_IFBLK = 0o170000, 0o020000, 0o060000

DENIED = (
    "_sysctl", "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
    "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "init_module", "ioperm",
    "iopl", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mount", "mount_setattr",
    "move_mount", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open",
    "pivot_root", "query_module", "quotactl", "quotactl_fd", "reboot", "request_key", "setns",
    "settimeofday", "stime", "swapoff", "swapon", "sysfs", "syslog", "umount", "umount2", "unshare",
    "uselib", "userfaultfd", "ustat", "vhangup",
)
# Namespace flags a clone() inside the container may not use (CLONE_NEWTIME included).
CLONE_NAMESPACE_FLAGS = (0x80, 0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                         0x40000000)


class ScmpArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class SockFprog(ctypes.Structure):
    """struct sock_fprog: the program prctl(PR_SET_SECCOMP) takes."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Program:
    """A compiled filter: the BPF bytes and the sock_fprog pointing at them (kept alive together)."""

    __slots__ = ("_buffer", "bpf", "fprog")

    def __init__(self, bpf: bytes) -> None:
        self.bpf = bpf
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self.fprog = SockFprog(len(bpf) // 8, ctypes.addressof(self._buffer))


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ScmpArgCmp)]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def availability() -> tuple[bool, str]:
    """(True, version) when libseccomp loads, else (False, why) — for `rade info`."""
    try:
        lib = _library()
    except OSError as err:
        return False, f"libseccomp cannot be loaded: {err}"

    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib.seccomp_version.restype = ctypes.POINTER(Version)
    v = lib.seccomp_version().contents
    return True, f"libseccomp {v.major}.{v.minor}.{v.micro}"


def _rule(lib: ctypes.CDLL, ctx: int, action: int, number: int, cmps: list[ScmpArgCmp]) -> None:
    array = (ScmpArgCmp * max(1, len(cmps)))(*cmps)
    rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
    if rc < 0:
        raise LaunchError("seccomp", f"libseccomp refused a rule for syscall {number}: {os.strerror(-rc)}")


@lru_cache(maxsize=1)
def program() -> Program:
    """The default filter as BPF: loaded once per process, compiled once per host.

    Compiling takes a few milliseconds, and each container's supervisor is a new process, so the BPF is
    kept in a root-only cache dir, named by a checksum of the policy, libseccomp's version and the
    machine. The file starts with that policy text, which must match in full: a checksum is cheap (no
    hashlib, whose import costs a start more than the lookup) and a collision can only cost a compile.
    """
    try:
        lib = _library()
    except OSError as err:
        raise LaunchError("seccomp", f"libseccomp cannot be loaded: {err}",
                          "install libseccomp2, or launch with seccomp disabled") from None
    policy = repr((POLICY_VERSION, DENIED, CLONE_NAMESPACE_FLAGS, availability()[1], os.uname().machine))
    header = policy.encode() + b"\n"
    path = f"{CACHE_DIR}/{zlib.crc32(header):08x}-{len(header)}.bpf"
    try:
        with open(path, "rb") as f:
            data = f.read()
        bpf = data[len(header):]
        if data.startswith(header) and bpf and len(bpf) % 8 == 0:
            return Program(bpf)
    except OSError:
        pass
    bpf = _compile(lib)
    _store(path, header + bpf)
    return Program(bpf)


def _store(path: str, data: bytes) -> None:
    """Write the cache file atomically; a host where that fails just compiles again next time."""
    if os.geteuid() != 0:
        return
    try:
        os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def _compile(lib: ctypes.CDLL) -> bytes:
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise LaunchError("seccomp", "seccomp_init failed")
    try:
        # 32-bit x86 binaries run on x86_64 hosts: filter their syscall table too, or they bypass it.
        lib.seccomp_arch_add(ctx, SCMP_ARCH_X86)
        eperm = _errno_action(errno.EPERM)
        for name in DENIED:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number != -1:  # -1: unknown to libseccomp; other negatives are its pseudo-numbers
                _rule(lib, ctx, eperm, number, [])
        clone = lib.seccomp_syscall_resolve_name(b"clone")
        for flag in CLONE_NAMESPACE_FLAGS:
            _rule(lib, ctx, eperm, clone, [ScmpArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag)])
        # No device nodes: with CAP_MKNOD (in Docker's default set) and no device cgroup, root in the
        # container could make /dev/sda and read the host's disk. FIFOs and sockets stay allowed.
        for name, mode_arg in ((b"mknod", 1), (b"mknodat", 2)):
            number = lib.seccomp_syscall_resolve_name(name)
            for kind in (S_IFCHR, S_IFBLK):
                _rule(lib, ctx, eperm, number, [ScmpArgCmp(mode_arg, SCMP_CMP_MASKED_EQ, S_IFMT, kind)])
        clone3 = lib.seccomp_syscall_resolve_name(b"clone3")
        if clone3 != -1:
            _rule(lib, ctx, _errno_action(errno.ENOSYS), clone3, [])
        fd = os.memfd_create("rade-seccomp")
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise LaunchError("seccomp", f"exporting the filter failed: {os.strerror(-rc)}")
            return os.pread(fd, 1 << 20, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
