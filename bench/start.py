"""Container start-to-exit of `/bin/true` in a busybox root: rade's engine API against the runtimes.

Columns, run alternately round after round (so a slow phase of the machine hits every column alike),
each from a fresh overlay root (a new upper and work dir per start) and with new pid, mount, uts, ipc,
net and cgroup namespaces:
  bare         fork + exec of busybox `true` (no container), the floor
  rade-api     engine.launch.launch() + wait + cleanup, in this process (no CLI start-up)
  rade-run     `rade run --rm --network none` (CLI start-up, state, supervisor) on an image bootstrapped
               from the same busybox; its supervisor is forked before the record is made when a CPU is
               idle (see engine.containers.spawn), so a quiet machine shows it at its fastest
  crun, runc   `crun run` / `runc run` of an OCI bundle whose rootfs is an overlay mounted here
  podman       `podman run --rm` with runc (peers.md's workarounds), a private store, fewer rounds
  ch-run       when installed (it makes no cgroup and no pid/net namespace: not the same work)
crun refuses hybrid cgroup hosts, so this process runs in its own mount namespace with the cgroup2 mount
hidden (peers.md); nothing of that reaches the host. Run as root: `.venv/bin/python bench/start.py
[--rounds N]`. Prints a table of medians (ms) and ends with `ratio rade/<peer> start X.XX` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import runtimes  # bench/, beside this script

from engine.launch import LaunchConfig, launch
from engine.syscalls import CLONE_NEWNS, LINUX, MNT_DETACH, MS_PRIVATE, MS_REC

HERE = os.path.dirname(os.path.abspath(__file__))

RADE = os.path.join(os.path.dirname(HERE), ".venv", "bin", "rade")


class Fresh:
    """A new upper/work dir per start, removed after (outside the timing)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.n = 0

    def next(self) -> str:
        self.n += 1
        path = f"{self.base}/c{self.n}"
        os.mkdir(path)
        return path


def bare(layer: str) -> Callable[[], None]:
    def run() -> None:
        pid = os.fork()
        if pid == 0:
            os.execv(f"{layer}/bin/busybox", ["true"])
        os.waitpid(pid, 0)
    return run


def rade_api(layer: str, fresh: Fresh, devnull: int) -> Callable[[], None]:
    def run() -> None:
        state = fresh.next()
        config = LaunchConfig(container_id=f"bench-{os.getpid()}-{fresh.n}", lower_dirs=(layer,),
                              upper_dir=f"{state}/upper", work_dir=f"{state}/work", rootfs_dir=f"{state}/rootfs",
                              argv=("/bin/true",), network="none", stdin=devnull, stdout=devnull, stderr=devnull)
        process = launch(config)
        status = process.wait()
        process.cleanup()
        assert status == 0, status
    return run


def oci_bundle(base: str, runtime: str) -> str:
    bundle = f"{base}/bundle-{runtime}"
    os.makedirs(f"{bundle}/rootfs")
    subprocess.run(["crun", "spec"], cwd=bundle, check=True, capture_output=True)
    with open(f"{bundle}/config.json") as f:
        spec = json.load(f)
    spec["process"]["args"] = ["/bin/true"]
    spec["process"]["terminal"] = False
    spec["root"] = {"path": "rootfs", "readonly": False}
    with open(f"{bundle}/config.json", "w") as f:
        json.dump(spec, f)
    return bundle


def oci_runtime(runtime: str, layer: str, fresh: Fresh, base: str) -> Callable[[], None]:
    bundle = oci_bundle(base, runtime)

    def run() -> None:
        state = fresh.next()
        os.mkdir(f"{state}/upper")
        os.mkdir(f"{state}/work")
        LINUX.mount("overlay", f"{bundle}/rootfs", "overlay", 0,
                    f"lowerdir={layer},upperdir={state}/upper,workdir={state}/work")
        try:
            subprocess.run([runtime, "run", "-b", bundle, f"bench-{runtime}-{fresh.n}"], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        finally:
            LINUX.umount2(f"{bundle}/rootfs", MNT_DETACH)
    return run


def rade_run(base: str) -> tuple[Callable[[], None] | None, str]:
    root = f"{base}/rade-root"
    try:
        # Through the command, like the runs measured (and out of this process, whose sys.path starts with
        # bench/, where a script's name may hide a standard module).
        subprocess.run([RADE, "--root", root, "image", "bootstrap", "busybox", "busybox:bench"], check=True,
                       capture_output=True, timeout=120)
        argv = [RADE, "--root", root, "run", "--rm", "--network", "none", "busybox:bench", "/bin/true"]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    except Exception as err:  # noqa: BLE001 - a missing column is reported, not fatal
        detail = getattr(err, "stderr", b"") or b""
        return None, f"{type(err).__name__}: {err} {detail.decode(errors='replace').strip()}"[:200]

    def run() -> None:
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return run, ""


def podman(base: str, layer: str) -> tuple[Callable[[], None] | None, str]:
    if shutil.which("podman") is None:
        return None, "podman is not installed"
    args = runtimes.podman_args(base)
    tar = f"{base}/layer.tar"
    try:
        subprocess.run(["tar", "-C", layer, "-cf", tar, "."], check=True, capture_output=True)
        subprocess.run([*args, "import", tar, "bench/busybox"], check=True, capture_output=True, timeout=120)
        argv = [*args, "run", "--rm", "--network", "none", *runtimes.PODMAN_ULIMITS, "bench/busybox", "/bin/true"]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)
    except Exception as err:  # noqa: BLE001
        detail = getattr(err, "stderr", b"") or b""
        return None, f"{type(err).__name__}: {detail.decode(errors='replace').strip()[:160]}"

    def run() -> None:
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return run, ""


def ch_run(layer: str) -> tuple[Callable[[], None] | None, str]:
    if shutil.which("ch-run") is None:
        return None, "ch-run (charliecloud) is not installed"
    env = {**os.environ, "USER": os.environ.get("USER", "root")}

    def run() -> None:
        subprocess.run(["ch-run", layer, "--", "/bin/true"], check=True, env=env, stdout=subprocess.DEVNULL)
    return run, ""


def detach_mounts_under(base: str) -> None:
    """Detach what is still mounted under `base` in this process's mount namespace (podman's storage binds
    its overlay dir onto itself; a run stopped by an error may leave a bundle's root), so it can be removed."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(base + "/")), key=len, reverse=True):
        try:
            LINUX.umount2(point, MNT_DETACH)
        except OSError:
            pass


def hide_cgroup2_for_crun() -> None:
    """Our own mount namespace, without the hybrid host's cgroup2 mount that crun refuses."""
    LINUX.unshare(CLONE_NEWNS)
    LINUX.mount(None, "/", None, MS_REC | MS_PRIVATE)
    if os.path.ismount("/sys/fs/cgroup/unified") and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        LINUX.umount2("/sys/fs/cgroup/unified", MNT_DETACH)


def busy_ms() -> float:
    """CPU time the whole machine has spent busy since boot, in ms (from /proc/stat): a column's CPU cost per
    start counts its supervisor, its container's set-up and the kernel's work wherever they ran, which only
    a machine otherwise idle makes exact."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) * 1000 / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/start.py needs root (namespaces, mounts, cgroups)", file=sys.stderr)
        return 1
    hide_cgroup2_for_crun()
    podman_before = runtimes.podman_cgroups()
    base = tempfile.mkdtemp(prefix="rade-bench-start-")
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        layer = runtimes.busybox_root(f"{base}/layer")
        fresh = Fresh(base)
        columns: dict[str, Callable[[], None]] = {"bare": bare(layer), "rade-api": rade_api(layer, fresh, devnull)}
        skipped: dict[str, str] = {}
        for name, (run, why) in (("rade-run", rade_run(base)),):
            if run:
                columns[name] = run
            else:
                skipped[name] = why
        for runtime in ("crun", "runc"):
            if shutil.which(runtime):
                columns[runtime] = oci_runtime(runtime, layer, fresh, base)
            else:
                skipped[runtime] = f"{runtime} is not installed"
        for name, (run, why) in (("ch-run", ch_run(layer)), ("podman", podman(base, layer))):
            if run:
                columns[name] = run
            else:
                skipped[name] = why
        times: dict[str, list[float]] = {name: [] for name in columns}
        cpu: dict[str, float] = {name: 0.0 for name in columns}
        for name, run in columns.items():
            run()  # warm-up: page cache, seccomp compile, image store
        for round_ in range(args.rounds):
            for name, run in columns.items():
                if name == "podman" and round_ % 4:
                    continue  # ~0.1 s each: a quarter of the rounds is plenty
                busy, start = busy_ms(), time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000)
                cpu[name] += busy_ms() - busy
            for entry in os.listdir(base):
                if entry.startswith("c") and entry[1:].isdigit():
                    shutil.rmtree(f"{base}/{entry}", ignore_errors=True)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"start-to-exit of /bin/true, fresh overlay root, {args.rounds} alternating rounds (ms); "
              f"load average {load} on {os.cpu_count()} CPUs")
        print(f"{'column':10s} {'median':>8s} {'p10':>8s} {'p90':>8s} {'runs':>5s} {'CPU/run':>8s}")
        for name, values in times.items():
            values.sort()
            p10, p90 = values[len(values) // 10], values[(len(values) * 9) // 10]
            print(f"{name:10s} {statistics.median(values):8.2f} {p10:8.2f} {p90:8.2f} {len(values):5d} "
                  f"{cpu[name] / len(values):8.2f}")
        print("CPU/run: the whole machine's busy time during a run (ms; every process and the kernel, exact on "
              "an otherwise idle machine)")
        for name, why in skipped.items():
            print(f"{name:10s} skipped: {why}")
        rade = statistics.median(times["rade-api"])
        for peer in ("crun", "runc", "podman", "ch-run", "bare"):
            if peer in times:
                print(f"ratio rade/{peer} start {rade / statistics.median(times[peer]):.2f}")
        if "rade-run" in times:
            for peer in ("runc", "crun"):
                if peer in times:
                    print(f"ratio rade-run/{peer} start "
                          f"{statistics.median(times['rade-run']) / statistics.median(times[peer]):.2f}")
    finally:
        os.close(devnull)
        detach_mounts_under(base)
        shutil.rmtree(base, ignore_errors=True)
        runtimes.remove_podman_cgroups(podman_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
