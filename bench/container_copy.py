"""`rade cp` of a directory tree into and out of a running container, against the same bytes moved by
`tar -c | tar -x` between two host directories (no container: the floor) and against `podman cp`.

Columns, run alternately round after round (a slow phase of the machine hits every column alike):
  tar-pipe      `tar -C SRC -cf - . | tar -C DST -xf -` on the host
  rade-in       `rade cp SRC C:/dst-N` into a running busybox container
  rade-out      `rade cp C:/data DST-N` out of it (a tree copied in before the rounds)
  podman-in/out `podman cp` the same ways (runc, a private store, peers.md's workarounds), when it runs
The tree: FILES files of 64 KiB in 20 directories, seeded random bytes. Run as root:
`.venv/bin/python bench/container_copy.py [--rounds N] [--files N]`. Prints a table of medians (ms) and ends with
`ratio rade-in/tar-pipe copy X.XX` lines.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
RADE = [os.path.join(os.path.dirname(HERE), ".venv", "bin", "python"), "-m", "rade"]
PODMAN_LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def make_tree(base: str, files: int) -> str:
    tree = f"{base}/tree"
    rng = random.Random(7)
    for i in range(files):
        d = f"{tree}/d{i % 20:02d}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/f{i:05d}", "wb") as fh:
            fh.write(rng.randbytes(64 * 1024))
    return tree


def run(argv: list[str], **kw) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=os.path.dirname(HERE),
                   **kw)


def podman_setup(base: str) -> tuple[list[str], str] | str:
    """(podman argv prefix, container name), or why podman cannot run here."""
    if shutil.which("podman") is None:
        return "podman is not installed"
    args = ["podman", "--root", f"{base}/podman-root", "--runroot", f"{base}/podman-run", "--runtime", "runc"]
    try:
        tar = f"{base}/busybox.tar"
        layer = f"{base}/bb"
        os.makedirs(f"{layer}/bin")
        shutil.copy2("/bin/busybox", f"{layer}/bin/busybox")
        os.symlink("busybox", f"{layer}/bin/sleep")
        os.symlink("busybox", f"{layer}/bin/sh")
        subprocess.run(["tar", "-C", layer, "-cf", tar, "."], check=True)
        subprocess.run([*args, "import", tar, "bench/busybox"], check=True, capture_output=True, timeout=120)
        subprocess.run([*args, "run", "-d", "--name", "copybench", "--network", "none", *PODMAN_LIMITS,
                        "bench/busybox", "/bin/sleep", "100000"], check=True, capture_output=True, timeout=120)
        subprocess.run([*args, "cp", f"{base}/tree", "copybench:/data"], check=True, capture_output=True,
                       timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        detail = getattr(err, "stderr", b"") or b""
        return f"{err} {detail.decode(errors='replace').strip()}"[:200]
    return args, "copybench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--files", type=int, default=400)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (containers)", file=sys.stderr)
        return 1
    base = tempfile.mkdtemp(prefix="rade-copy-bench-")
    root = f"{base}/rade-root"
    podman: tuple[list[str], str] | str = "not set up"
    podman_before = podman_cgroups()
    try:
        tree = make_tree(base, args.files)
        megabytes = args.files * 64 / 1024
        run([*RADE, "--root", root, "image", "bootstrap", "busybox", "busybox:bench"])
        run([*RADE, "--root", root, "run", "-d", "--network", "none", "--name", "copybench", "busybox:bench",
             "sleep", "100000"])
        run([*RADE, "--root", root, "cp", tree, "copybench:/data"])
        podman = podman_setup(base)
        count = iter(range(1, 1 << 30))

        def host_dest() -> str:
            return f"{base}/out-{next(count)}"

        def tar_pipe() -> None:
            dest = host_dest()
            os.mkdir(dest)
            run(["sh", "-c", f"tar -C {tree} -cf - . | tar -C {dest} -xf -"])

        columns: dict[str, Callable[[], None]] = {
            "tar-pipe": tar_pipe,
            "rade-in": lambda: run([*RADE, "--root", root, "cp", tree, f"copybench:/dst-{next(count)}"]),
            "rade-out": lambda: run([*RADE, "--root", root, "cp", "copybench:/data", host_dest()]),
        }
        if isinstance(podman, tuple):
            prefix, name = podman
            columns["podman-in"] = lambda: run([*prefix, "cp", tree, f"{name}:/dst-{next(count)}"])
            columns["podman-out"] = lambda: run([*prefix, "cp", f"{name}:/data", host_dest()])
        times: dict[str, list[float]] = {k: [] for k in columns}
        for _ in range(args.rounds):
            for key, column in columns.items():
                start = time.perf_counter()
                column()
                times[key].append((time.perf_counter() - start) * 1000)
            for entry in os.listdir(base):
                if entry.startswith("out-"):
                    shutil.rmtree(f"{base}/{entry}", ignore_errors=True)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"copy of {args.files} files ({megabytes:.0f} MiB), {args.rounds} alternating rounds (ms); "
              f"load average {load} on {os.cpu_count()} CPUs")
        print(f"{'column':11s} {'median':>8s} {'min':>8s} {'max':>8s}")
        for key, values in times.items():
            print(f"{key:11s} {statistics.median(values):8.1f} {min(values):8.1f} {max(values):8.1f}")
        if not isinstance(podman, tuple):
            print(f"podman      skipped: {podman}")
        floor = statistics.median(times["tar-pipe"])
        for key in ("rade-in", "rade-out"):
            print(f"ratio {key}/tar-pipe copy {statistics.median(times[key]) / floor:.2f}")
        if isinstance(podman, tuple):
            for way in ("in", "out"):
                print(f"ratio rade-{way}/podman-{way} copy "
                      f"{statistics.median(times[f'rade-{way}']) / statistics.median(times[f'podman-{way}']):.2f}")
    finally:
        subprocess.run([*RADE, "--root", root, "rm", "-f", "copybench"], check=False,
                       capture_output=True, cwd=os.path.dirname(HERE))
        if isinstance(podman, tuple):
            subprocess.run([*podman[0], "rm", "-f", "-t", "0", podman[1]], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        for path in sorted(podman_cgroups() - podman_before, key=len, reverse=True):
            try:
                os.rmdir(path)
            except OSError:
                pass
    return 0


def podman_cgroups() -> set[str]:
    """The cgroups under podman's libpod_parent (cgroupfs manager), which it may leave behind."""
    found = set()
    for controller in os.listdir("/sys/fs/cgroup"):
        top = f"/sys/fs/cgroup/{controller}/libpod_parent"
        for dirpath, _dirs, _files in os.walk(top):
            found.add(dirpath)
    return found


if __name__ == "__main__":
    raise SystemExit(main())
