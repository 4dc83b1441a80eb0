"""A small Linux guest with a pure cgroup v2 hierarchy, booted under qemu, for testing the v2 driver on the
kernel's real controller files (this host binds cpu and memory to cgroup v1, so its own cgroup2 mount has
neither).

The guest is Debian's stock kernel (taken from its .deb with `apt-get download` and `dpkg-deb`, never
installed on the host) and an initramfs made here: busybox, the few modules the root needs (virtio-pci,
9p, overlay) and an /init that mounts the host's / read-only over 9p under a tmpfs overlay, mounts
cgroup2 alone on /sys/fs/cgroup (`cgroup_no_v1=all`), runs one command in the repository and prints its
exit status on the serial console before rebooting, which ends qemu (`-no-reboot`). The guest has no
network device. The kernel and its modules are cached under CACHE, keyed by the kernel package; the
initramfs is made per boot since it carries the command.

KVM is used when the host offers hardware virtualization (kvm_intel or kvm_amd); a /dev/kvm backed by
anything else (PVM, which emulates a stock kernel instruction by instruction, slower than TCG) and a host
without /dev/kvm get qemu's multi-threaded TCG, which boots this guest in a few seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path("/var/tmp/rade-test-v2-guest")
QEMU = "qemu-system-x86_64"
BUSYBOX = "/bin/busybox"
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
EXIT_MARK = "RADE-GUEST-EXIT"


class GuestUnavailable(Exception):
    """This machine cannot boot the guest (no qemu, no kernel package to fetch); the message says why."""


@dataclass(frozen=True, slots=True)
class GuestKernel:
    """A cached kernel: its image, and its root's modules in load order."""

    release: str
    vmlinuz: Path
    modules: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class GuestRun:
    """One boot: the command's exit status (None if it never printed one) and the whole serial console."""

    status: int | None
    console: str
    accel: str


def kernel_package() -> str:
    """The versioned package Debian's linux-image-amd64 stands for now, e.g. linux-image-6.1.0-56-amd64."""
    try:
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise GuestUnavailable(f"cannot ask apt for a guest kernel: {err}") from None
    found = re.search(r"Depends: (linux-image-\S+)", out)
    if not found:
        raise GuestUnavailable("apt knows no package behind linux-image-amd64")
    return found.group(1)


def prepare_kernel(fetch: bool = False) -> GuestKernel:
    """The guest kernel from the cache. With `fetch` (`make test` does it before the tests: a test sends
    nothing beyond loopback), Debian's current package is fetched and unpacked when the cache lacks it;
    without, the newest cached kernel serves."""
    cached = sorted(p.parent for p in CACHE.glob("*/ready"))
    if not fetch:
        if not cached:
            raise GuestUnavailable(f"no guest kernel under {CACHE}: `make test` (or `python "
                                   f"tests/engine/cgroups/guest.py fetch`) fetches Debian's")
        target = cached[-1]
        order = (target / "modules.order").read_text().split()
        return GuestKernel(target.name, target / "vmlinuz", tuple(target / "modules" / m for m in order))
    try:
        package = kernel_package()
    except GuestUnavailable:
        if not cached:
            raise
        package = "linux-image-" + cached[-1].name  # offline, without package lists: the cached one
    release = package.removeprefix("linux-image-")
    target = CACHE / release
    if not (target / "ready").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / ".lock", "w") as lock:
            # Two test runs at once fetch the package once.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / "ready").exists():
                _unpack_kernel(package, release, target)
    order = (target / "modules.order").read_text().split()
    return GuestKernel(release, target / "vmlinuz", tuple(target / "modules" / m for m in order))


def _unpack_kernel(package: str, release: str, target: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="build-", dir=CACHE))
    try:
        fetched = subprocess.run(["apt-get", "download", package], check=False, cwd=work, capture_output=True,
                                 text=True)
        debs = list(work.glob("*.deb"))
        if not debs:
            raise GuestUnavailable(f"cannot fetch {package}: {fetched.stderr.strip()[-300:]}")
        tree = work / "tree"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tree)], check=True)
        index = {ko.name[:-3].replace("-", "_"): ko for ko in (tree / "lib/modules" / release).rglob("*.ko")}
        staged = work / "staged"
        (staged / "modules").mkdir(parents=True)
        shutil.copy2(tree / "boot" / f"vmlinuz-{release}", staged / "vmlinuz")
        order = load_order(ROOT_MODULES, index)
        for name in order:
            shutil.copy2(index[name], staged / "modules" / f"{name}.ko")
        (staged / "modules.order").write_text("".join(f"{name}.ko\n" for name in order))
        (staged / "ready").write_text(package + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.rename(staged, target)
        for older in CACHE.glob("*/ready"):
            # A kernel Debian has since replaced is of no more use.
            if older.parent != target:
                shutil.rmtree(older.parent, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def module_depends(ko: Path) -> list[str]:
    """The modules a .ko needs loaded first, from its .modinfo section (what depmod would read)."""
    found = re.search(rb"\0depends=([^\0]*)\0", ko.read_bytes())
    return [d for d in found.group(1).decode().split(",") if d] if found else []


def load_order(wanted: tuple[str, ...], index: dict[str, Path]) -> list[str]:
    """`wanted` and everything they depend on, each after its dependencies."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in index:
            raise GuestUnavailable(f"the guest kernel has no module {name} (is it built in?)")
        for dep in module_depends(index[name]):
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /modules/$m || echo "insmod $m failed"; done
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower || exec reboot -f
mount -t tmpfs -o mode=0755 rw /rw
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work root /newroot || exec reboot -f
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t cgroup2 -o nsdelegate cgroup2 /newroot/sys/fs/cgroup
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mkdir -p /rw/repo
mount --bind "/newroot{cwd}" /rw/repo
for d in /tmp /var/tmp /run /dev/shm /mnt; do mount -t tmpfs -o mode=1777 tmpfs /newroot$d; done
# The repository again, in case one of those covered it (a clone under /tmp).
mkdir -p "/newroot{cwd}"
mount --bind /rw/repo "/newroot{cwd}"
cp /stage2 /newroot/run/stage2
umount /proc /sys
exec switch_root /newroot /bin/busybox sh /run/stage2
"""

STAGE2 = """export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
export RADE_IN_V2_GUEST=1 PYTHONDONTWRITEBYTECODE=1
cd {cwd}
{command}
echo "{mark} $?"
/bin/busybox sync
/bin/busybox reboot -f
"""


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    """One entry of a newc ("070701") cpio archive, the format the kernel unpacks an initramfs from."""
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def build_initramfs(kernel: GuestKernel, command: str, cwd: str, dest: Path) -> None:
    """The initramfs for one boot: busybox, the root's modules, /init, and the command as /stage2."""
    entries = [("dev", stat.S_IFDIR | 0o755, b""), ("proc", stat.S_IFDIR | 0o755, b""),
               ("sys", stat.S_IFDIR | 0o755, b""), ("bin", stat.S_IFDIR | 0o755, b""),
               ("modules", stat.S_IFDIR | 0o755, b""),
               ("bin/busybox", stat.S_IFREG | 0o755, Path(BUSYBOX).read_bytes()),
               ("init", stat.S_IFREG | 0o755, INIT.format(cwd=cwd).encode()),
               ("stage2", stat.S_IFREG | 0o644,
                STAGE2.format(cwd=cwd, command=command, mark=EXIT_MARK).encode()),
               ("modules.order", stat.S_IFREG | 0o644, "".join(f"{m.name}\n" for m in kernel.modules).encode())]
    entries += [(f"modules/{m.name}", stat.S_IFREG | 0o644, m.read_bytes()) for m in kernel.modules]
    with open(dest, "wb") as out:
        out.writelines(_cpio_entry(name, mode, data, ino=ino) for ino, (name, mode, data) in enumerate(entries, 1))
        # The kernel's first console: without it /init would start with no stdin, stdout or stderr.
        out.write(_cpio_entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1), ino=len(entries) + 1))
        out.write(_cpio_entry("TRAILER!!!", 0))


def accelerator() -> tuple[str, ...]:
    """qemu's accelerator and CPU options: KVM on hardware virtualization, else multi-threaded TCG."""
    hardware = os.path.exists("/sys/module/kvm_intel") or os.path.exists("/sys/module/kvm_amd")
    if hardware and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ("-accel", "kvm", "-cpu", "host")
    return ("-accel", "tcg,thread=multi", "-cpu", "max")


def boot(command: str, cwd: str, timeout: float = 300.0, memory_mb: int = 1024, cpus: int = 2) -> GuestRun:
    """Boot the guest, run `command` (a shell line) in `cwd` there, and return its status and the console.

    qemu is killed by the pid this call started if the guest has not ended within `timeout` seconds.
    """
    if shutil.which(QEMU) is None:
        raise GuestUnavailable(f"{QEMU} is not installed (Debian's qemu-system-x86)")
    if not os.path.exists(BUSYBOX):
        raise GuestUnavailable("needs Debian's busybox-static for the guest's init")
    kernel = prepare_kernel()
    accel = accelerator()
    with tempfile.TemporaryDirectory(prefix="rade-test-v2-guest-") as work:
        initrd = Path(work) / "initrd"
        console = Path(work) / "console"
        build_initramfs(kernel, command, cwd, initrd)
        argv = [QEMU, "-machine", "q35", *accel, "-m", str(memory_mb), "-smp", str(cpus),
                "-nodefaults", "-display", "none", "-monitor", "none", "-nic", "none", "-no-reboot",
                "-serial", f"file:{console}",
                "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
                "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd),
                "-append", "console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all rdinit=/init"]
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            qemu_out, _ = qemu.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu_out, _ = qemu.communicate()
            timed_out = True
        finally:
            with contextlib.suppress(ProcessLookupError):
                if qemu.poll() is None:
                    qemu.kill()
                    qemu.wait()
        text = console.read_text(errors="replace") if console.exists() else ""
    text += qemu_out.decode(errors="replace")
    if timed_out:
        text += f"\n[qemu killed after {timeout:.0f} s]\n"
    found = re.findall(rf"^{EXIT_MARK} (\d+)\s*$", text, re.MULTILINE)
    return GuestRun(int(found[-1]) if found else None, text, accel[1])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: guest.py fetch   (fetch and unpack the guest kernel into the cache)")
    try:
        print(f"cgroup v2 test guest kernel: {prepare_kernel(fetch=True).release}")
    except GuestUnavailable as why:
        print(f"no cgroup v2 test guest kernel (its test will skip): {why}")
