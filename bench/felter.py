"""The Felter et al. (2014) compute table for rade: Linpack, STREAM, RandomAccess and xz, native vs containers.

Workloads (every rate: higher is better):
  hpl, stream, randomaccess   Debian's hpcc with 2 MPI ranks (`mpirun -np 2 hpcc`, bench/hpccinf.txt with
                              HPL's order N set); HPL_Tflops in GFLOPS, SingleSTREAM_Triad in GB/s,
                              SingleRandomAccess_GUPs in GUPS, read from hpcc's summary section
  xz                          `xz -T0 -6` over a generated file of mixed compressibility (a seeded PRNG, so
                              every run compresses the same bytes), MB/s of input, timed inside the column;
                              a small input gets smaller blocks so that every CPU still compresses one
Columns, one round after another (native rade crun podman native rade crun podman ...) so a slow phase of
the machine hits each column alike:
  native    the host's binaries
  rade      `rade run --rm --network host` with the node's CPUs and memory as its quota
  cluster   a one-task job on a one-node dev cluster (`rade cluster up`, `rade submit --wait`)
  crun      `crun run` of an OCI bundle with the same quota (in a private mount namespace without the hybrid
            host's cgroup2 mount, which crun refuses)
  podman    `podman run --rm --network host` with runc and the same quota, a private store
Every container runs the same root: the host's static busybox, and hpcc, mpirun, xz and date copied from
the host with Open MPI's plugins and every library they load (host_root()), so every column runs the same
binaries; the work directory is bind-mounted at its own path. A column that cannot run is skipped with the
reason. Run as root: `.venv/bin/python bench/felter.py [--quick]`.
Prints the table (median and min-max per cell) and last `ratio A/B workload X.XXX` lines (ratio of medians).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# bench/, beside this script: on the path when it runs; the tests load it first.
from felter_workloads import ENV, RANKS, UNITS, WORKLOADS, BenchError, Runner, measure, prepare

HERE = os.path.dirname(os.path.abspath(__file__))
RADE = os.path.join(os.path.dirname(HERE), ".venv", "bin", "rade")
IMAGE = "felter:busybox"
# What the workloads run, copied from the host into the containers' root (with every library they load).
HOST_PROGRAMS = ("/usr/bin/hpcc", "/usr/bin/mpirun", "/usr/bin/orted", "/usr/bin/xz", "/usr/bin/date")
HOST_TREES = ("/usr/lib/x86_64-linux-gnu/openmpi", "/usr/lib/x86_64-linux-gnu/pmix2",
              "/usr/lib/x86_64-linux-gnu/ucx", "/usr/lib/x86_64-linux-gnu/libibverbs", "/usr/share/openmpi",
              "/etc/openmpi")
PAIRS = (("rade", "native"), ("cluster", "native"), ("crun", "native"), ("podman", "native"), ("rade", "crun"))


# -- columns -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quota:
    """What every container column gets: the node's CPUs and memory."""

    cpus: int
    memory_mib: int


def node_quota() -> Quota:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return Quota(os.cpu_count() or 1, kib // 1024)


def run_checked(argv: Sequence[str], timeout: float = 600, **kwargs: object) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv[:6])} ... exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def native() -> Runner:
    return lambda argv, cwd: run_checked(argv, cwd=cwd, env=ENV)


def rade(root: str, tar: str, work: str, quota: Quota) -> Runner:
    run_checked([RADE, "--root", root, "import", tar, IMAGE], timeout=300)
    head = [RADE, "--root", root, "run", "--rm", "--network", "host", "--cpus", str(quota.cpus),
            "--memory", f"{quota.memory_mib}M"]
    head += ["-v", f"{work}:{work}"]
    head += [arg for key, value in ENV.items() for arg in ("-e", f"{key}={value}")]
    return lambda argv, cwd: run_checked([*head, "-w", cwd, IMAGE, *argv])


def shared_libraries(path: str) -> set[str]:
    """The libraries (and the loader) ld.so maps for an ELF file, as ldd names them."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
    found = set()
    for line in out.splitlines():
        target = line.split("=>", 1)[-1].split()
        if target and target[0].startswith("/"):
            found.add(target[0])
    return found


def host_root(base: str) -> tuple[str, str]:
    """A root of the host's static busybox (an applet link each) and the host's own files the workloads run:
    HOST_PROGRAMS, HOST_TREES (Open MPI's plugins and data) and every library those load. Returns the
    directory and a tar of it: every container column runs these same bytes."""
    import runtimes  # bench/, beside this script (here, not on top: tests load this file alone)

    layer = runtimes.busybox_root(f"{base}/layer")
    os.makedirs(f"{layer}/usr/bin", exist_ok=True)
    os.chmod(f"{layer}/tmp", 0o1777)
    with open(f"{layer}/etc/passwd", "w", encoding="ascii") as passwd:
        passwd.write("root:x:0:0:root:/root:/bin/sh\n")
    files = {path for path in HOST_PROGRAMS if os.path.exists(path)} | {"/etc/ld.so.cache"}
    for tree in HOST_TREES:
        if os.path.isdir(tree):
            shutil.copytree(tree, layer + tree, dirs_exist_ok=True)
            files |= {os.path.join(d, f) for d, _, names in os.walk(tree) for f in names if ".so" in f}
    for path in sorted(files | {lib for program in files for lib in shared_libraries(program)}):
        os.makedirs(os.path.dirname(layer + path), exist_ok=True)
        shutil.copy2(path, layer + path)  # the file a symlink names, at the symlink's path
    tar = f"{base}/root.tar"
    run_checked(["tar", "-C", layer, "-cf", tar, "."])
    return layer, tar


def crun(base: str, layer: str, work: str, quota: Quota) -> Runner:
    bundle = f"{base}/bundle"
    os.makedirs(bundle)
    run_checked(["crun", "spec"], cwd=bundle)
    with open(f"{bundle}/config.json", encoding="utf-8") as config:
        spec = json.load(config)
    spec["root"] = {"path": layer, "readonly": True}
    spec["process"].update(terminal=False, env=[f"{k}={v}" for k, v in ENV.items()])
    spec["process"]["rlimits"] = []
    # A read-only root (the layer is shared) needs a writable /tmp for Open MPI's session directory,
    # mounted before the work directory's bind (which may be under /tmp).
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777"]})
    spec["mounts"].append({"destination": work, "type": "bind", "source": work, "options": ["rbind", "rw"]})
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"]
    spec["linux"]["resources"] = {"cpu": {"quota": quota.cpus * 100_000, "period": 100_000},
                                  "memory": {"limit": quota.memory_mib << 20}}
    spec["linux"].pop("seccomp", None)  # crun spec's default has none either; kept explicit

    def run(argv: Sequence[str], cwd: str) -> str:
        spec["process"].update(args=list(argv), cwd=cwd)
        with open(f"{bundle}/config.json", "w", encoding="utf-8") as config:
            json.dump(spec, config)
        name = f"felter-{os.getpid()}"
        # crun refuses a hybrid host: hide its cgroup2 mount in a mount namespace of this run only.
        script = ("mountpoint -q /sys/fs/cgroup/unified && ! test -e /sys/fs/cgroup/cgroup.controllers "
                  "&& umount /sys/fs/cgroup/unified; exec crun run -b \"$0\" \"$1\"")
        return run_checked(["unshare", "-m", "--propagation", "private", "sh", "-c", script, bundle, name])
    return run


def podman(base: str, tar: str, work: str, quota: Quota) -> Runner:
    import runtimes  # bench/, beside this script

    args = runtimes.podman_args(base)
    run_checked([*args, "import", tar, "felter/busybox"], timeout=120)
    head = [*args, "run", "--rm", "--network", "host", "--cpus", str(quota.cpus), "--memory",
            f"{quota.memory_mib}m", *runtimes.PODMAN_ULIMITS]
    head += ["-v", f"{work}:{work}"]
    head += [arg for key, value in ENV.items() for arg in ("-e", f"{key}={value}")]
    return lambda argv, cwd: run_checked([*head, "-w", cwd, "felter/busybox", *argv])


def cluster(root: str, base: str, work: str, quota: Quota, stops: list[Callable[[], object]]) -> Runner:
    """A one-node dev cluster on rade's root (its agent sees the image there); each run a one-task job."""
    stops.append(lambda: subprocess.run([RADE, "--root", root, "cluster", "down"], capture_output=True,
                                        timeout=120, check=False))
    try:
        run_checked([RADE, "--root", root, "cluster", "up", "--nodes", "1"], timeout=180)
    except BenchError as err:
        last = [Path(log).read_text(errors="replace").strip().splitlines()[-1:]
                for log in sorted(glob.glob(f"{root}/cluster/*.log"))]
        raise BenchError(f"{err}; last log lines: {[line for lines in last for line in lines]}") from None
    nodes = json.loads(run_checked([RADE, "--root", root, "nodes", "--json"]))
    memory = min(quota.memory_mib, int(nodes[0]["memory_total"]) >> 20)
    cpus = min(quota.cpus, int(nodes[0]["cpus_total"]))

    def run(argv: Sequence[str], cwd: str) -> str:
        out = f"{work}/job.out"
        job = {"name": "felter", "image": IMAGE, "command": ["sh", "-c", '"$@" > ' + out, "sh", *argv],
               "workdir": cwd, "env": ENV, "network": "host", "requeue": False,
               "resources": {"cpus": cpus, "memory": f"{memory}M"},
               "volumes": [f"{work}:{work}"]}
        with open(f"{base}/job.yaml", "w", encoding="utf-8") as spec:
            json.dump(job, spec)  # JSON is YAML
        run_checked([RADE, "--root", root, "submit", "--wait", f"{base}/job.yaml"])
        with open(out, encoding="utf-8") as text:
            return text.read()
    return run


# -- the benchmark -------------------------------------------------------------------------------------------


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.4g} ({min(values):.4g}-{max(values):.4g})"


def ratio_lines(results: dict[str, dict[str, list[float]]]) -> list[str]:
    """`ratio A/B workload X.XXX` for each pair both of whose columns ran: the ratio of medians."""
    lines = []
    for a, b in PAIRS:
        if a in results and b in results:
            for workload in WORKLOADS:
                if results[a][workload] and results[b][workload]:
                    value = statistics.median(results[a][workload]) / statistics.median(results[b][workload])
                    lines.append(f"ratio {a}/{b} {workload} {value:.3f}")
    return lines


def table(results: dict[str, dict[str, list[float]]], skipped: dict[str, str]) -> list[str]:
    names = list(results)
    width = max([22, *(len(cell(v)) + 1 for r in results.values() for v in r.values())])
    lines = [f"{'workload':22s}" + "".join(f"{name:>{width}s}" for name in names)]
    for workload in WORKLOADS:
        row = f"{workload + ' (' + UNITS[workload] + ')':22s}"
        lines.append(row + "".join(f"{cell(results[name][workload]):>{width}s}" for name in names))
    lines += [f"{name}: skipped: {why}" for name, why in skipped.items()]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    import runtimes  # bench/, beside this script

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 rounds, HPL order 1500, 8 MB for xz (what `make bench` runs)")
    parser.add_argument("--runs", type=int, help="rounds of every column (default 5, --quick 3)")
    parser.add_argument("--hpl-n", type=int, help="HPL problem order (default 2000, --quick 1500)")
    parser.add_argument("--xz-mb", type=int, help="MB of xz input (default 200, --quick 8)")
    parser.add_argument("--columns", default="native,rade,cluster,crun,podman")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    xz_mb = args.xz_mb or (8 if args.quick else 200)
    hpl_n = args.hpl_n or (1500 if args.quick else 2000)
    if os.geteuid() != 0:
        print("bench/felter.py needs root (containers, cgroups)", file=sys.stderr)
        return 1
    missing = [tool for tool in ("hpcc", "mpirun", "xz") if shutil.which(tool) is None]
    if missing:
        print(f"bench/felter.py needs {', '.join(missing)} (make sysdeps installs them)", file=sys.stderr)
        return 1
    wanted = args.columns.split(",")
    quota = node_quota()
    base = tempfile.mkdtemp(prefix="rade-bench-felter-")
    os.chmod(base, 0o755)
    podman_before = runtimes.podman_cgroups()
    stops: list[Callable[[], object]] = []
    try:
        work = prepare(base, hpl_n, xz_mb)
        layer, tar = host_root(base)
        root = f"{base}/rade-root"
        makers: dict[str, Callable[[], Runner]] = {
            "native": native,
            "rade": lambda: rade(root, tar, work.path, quota),
            "cluster": lambda: cluster(root, base, work.path, quota, stops),
            "crun": lambda: crun(base, layer, work.path, quota),
            "podman": lambda: podman(base, tar, work.path, quota),
        }
        columns: dict[str, Runner] = {}
        skipped: dict[str, str] = {}
        for name in wanted:
            tool = {"crun": "crun", "podman": "podman"}.get(name)
            if tool and shutil.which(tool) is None:
                skipped[name] = f"{tool} is not installed"
                continue
            try:
                columns[name] = makers[name]()
                # A first start (page cache, image, supervisor) outside the timing.
                columns[name](["sh", "-c", '/usr/bin/xz -T0 -1 -c "$0" > /dev/null', work.xz_input], work.path)
            except (BenchError, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as err:
                columns.pop(name, None)
                skipped[name] = str(err).splitlines()[0][:240] if str(err) else type(err).__name__
        results = {name: {w: [] for w in WORKLOADS} for name in columns}
        for round_ in range(runs):
            for name, run in columns.items():
                try:
                    figures = measure(run, work)
                except (BenchError, OSError, subprocess.TimeoutExpired) as err:
                    print(f"round {round_ + 1} {name}: {err}", file=sys.stderr)
                    continue
                for workload, value in figures.items():
                    results[name][workload].append(value)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"Felter et al. workloads, {runs} alternating rounds, median (min-max); hpcc {RANKS} ranks N="
              f"{hpl_n}, xz -T0 -6 over {xz_mb} MB; quota {quota.cpus} CPUs {quota.memory_mib} MiB; "
              f"load average {load} on {os.cpu_count()} CPUs")
        print("\n".join(table(results, skipped)))
        print("\n".join(ratio_lines(results)))
    finally:
        for stop in stops:
            stop()
        shutil.rmtree(base, ignore_errors=True)
        runtimes.remove_podman_cgroups(podman_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
