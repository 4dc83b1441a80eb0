"""MPI in rade vs native: the same binaries, the same topology, the same Open MPI parameters.

Three columns, measured in alternating runs (the order rotates each round), medians and spreads:

  native          `bench/mpi_native.py`'s two namespace hosts: each a network and UTS namespace with one
                  veth into a bridge and one CPU of its own (taskset); plain `mpirun` on host A (rank 0
                  there), orted and rank 1 on host B, each host's processes in a session of their own (as
                  ssh gives, and as a rade job's containers have: the kernel's autogroups weigh CPU shares
                  by session), the host's Debian Open MPI, python3, mpi4py and numpy.
  native+seccomp  the same, each rank under rade's default seccomp filter and nothing else of a container
                  (`bench/mpi_seccomp.py`): the cost of the filter on the ranks' hot path, on its own.
  rade            a job on a 2-node dev cluster (`rade cluster`): each node the same kind of namespace host
                  on its own bridge, its agent offering one CPU (node1 CPU 0, node2 CPU 1, as hosts A and
                  B), one rank a node in the job's container there (cpuset = that CPU, no CPU quota,
                  memory limit, seccomp, no capabilities), `mpirun` in node1's container, orted started in
                  node2's through `rade-rsh`; the `mpi:bookworm` image, whose Debian packages are checked
                  to be the host's own (the same build of every binary the ranks run).

Both use `MCA` of mpi_native (TCP between the ranks, no binding by Open MPI: the CPUs are the hosts' or
the tasks' cpusets). The rade job is waited for by one blocked `rade submit --wait`, so nothing polls
while its ranks run. Measured: ping-pong latency (8 B) and bandwidth (1 MiB) from examples/mpi/pingpong.py,
and the heat solver's time per step (768 x 768, examples/mpi/heat.py). Prints the table, then ratio lines
against the native column. Needs root; removes the cluster and the hosts on every path.

    .venv/bin/python bench/mpi.py [--runs 5] [--heat-steps 100] [--heat-repeats 4] [--no-seccomp-column]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import mpi_native  # bench/, beside this script
from mpi_native import BANDWIDTH_SIZE, LATENCY_SIZE, NativeHosts, Spread, spread_of

from jobs.errors import RadeError

REPO = Path(__file__).resolve().parent.parent

IMAGE = "mpi:bookworm"
DEFAULT_IMAGE_ROOT = os.environ.get("RADE_TEST_MPI_ROOT", "/var/tmp/rade-test-mpi")
# Our own names, so a native baseline run by hand at the same time keeps its hosts.
HOSTS = ("rade-mpib-a", "rade-mpib-b")
NATIVE_BRIDGE = "rade-mpib0"
HEAT_SIZE = 768
JOB_TIMEOUT = 600.0


def rade(root: Path, *args: str, timeout: float = 1800.0) -> str:
    result = subprocess.run([sys.executable, "-m", "rade", "--root", str(root), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RadeError(f"rade {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return result.stdout


def build_image(image_root: Path) -> None:
    image_root.mkdir(parents=True, exist_ok=True)
    rade(image_root, "image", "bootstrap", "debian:bookworm", "debian:bookworm")
    rade(image_root, "build", "-t", IMAGE, "examples/mpi")


@contextlib.contextmanager
def cluster(image_root: Path) -> Iterator[Path]:
    """A 2-node dev cluster on a temporary root sharing `image_root`'s images; node1's agent sees only
    CPU 0 and node2's only CPU 1 (an agent offers the CPUs of its affinity)."""
    from rade import devcluster

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise RadeError("the benchmark needs 2 CPUs: one for each node")
    root = Path(tempfile.mkdtemp(prefix="rade-bench-mpi-"))
    (root / "images").symlink_to(image_root / "images")
    try:
        try:
            os.sched_setaffinity(0, {cpus[0]})
            state = devcluster.up(str(root), 2, timeout=60)
            devcluster.stop_process(state.nodes[1].agent)
            os.sched_setaffinity(0, {cpus[1]})
            devcluster.restart(str(root), nodes=(state.nodes[1].name,))
        finally:
            os.sched_setaffinity(0, cpus)
        _wait_for_cpus(root, {node.name: 1 for node in state.nodes})
        yield root
    finally:
        devcluster.down(str(root))
        (root / "images").unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


def _wait_for_cpus(root: Path, wanted: dict[str, int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        nodes = {n["name"]: n for n in json.loads(rade(root, "nodes", "--json"))}
        if all(nodes.get(name, {}).get("state") == "IDLE" and nodes[name].get("cpus_total") == count
               for name, count in wanted.items()):
            return
        if time.monotonic() > deadline:
            raise RadeError(f"the cluster's nodes did not come up with one CPU each: {nodes}")
        time.sleep(0.2)


def run_job(root: Path, name: str, command: list[str]) -> str:
    """Run `command` on 2 ranks, one per node, as a rade job; rank 0's output (task 0 runs `mpirun`).

    Waited for by one `rade submit --wait`, blocked on the scheduler: a client polling `rade show` would
    start a Python process every tenth of a second on the CPUs the ranks run on."""
    spec = {"name": name, "image": IMAGE, "command": command, "resources": {"cpus": 1, "memory": "1G"},
            "env": mpi_native.mca_env(), "mpi": {"ranks": 2, "ranks_per_node": 1},
            "placement": {"policy": "spread"}, "time_limit": "10m"}
    path = root / f"{name}.json"
    path.write_text(json.dumps(spec))  # JSON is YAML
    result = subprocess.run([sys.executable, "-m", "rade", "--root", str(root), "submit", "--wait", str(path)],
                            cwd=REPO, capture_output=True, text=True, timeout=JOB_TIMEOUT, check=False)
    words = result.stdout.split()
    if not words or not words[0].isdigit():
        raise RadeError(f"rade submit {name} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    out = rade(root, "logs", words[0], "--task", "0")
    if result.returncode != 0:
        raise RadeError(f"job {words[0]} ({name}) exited {result.returncode}: {out.strip()[-500:]}")
    return out


# The Debian packages whose files the ranks run: the same versions on the host and in the image mean the
# same build of every binary on both sides.
PACKAGES = ("openmpi-bin", "libopenmpi3", "python3.11-minimal", "libpython3.11-stdlib", "python3-mpi4py",
            "python3-numpy", "libc6")


def host_packages(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *names], capture_output=True,
                         text=True, check=False).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def image_packages(image_root: Path, names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Versions from the dpkg database of the image's top-most layer that has one."""
    from engine.containers.launchspec import image_layers

    for layer in image_layers(image_root, IMAGE):
        status = layer / "var" / "lib" / "dpkg" / "status"
        if status.is_file():
            found = {}
            for stanza in status.read_text(errors="replace").split("\n\n"):
                fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line)
                if fields.get("Package") in names and "installed" in fields.get("Status", ""):
                    found[fields["Package"]] = fields.get("Version", "")
            return found
    return {}


def same_build(image_root: Path) -> str:
    """One line saying whether the host's and the image's packages are the same versions."""
    host, image = host_packages(), image_packages(image_root)
    differ = [f"{n} host {host.get(n, '-')} image {image.get(n, '-')}" for n in PACKAGES if host.get(n) != image.get(n)]
    if differ:
        return "  WARNING: the host and the image differ: " + "; ".join(differ)
    return "  same build on both sides: " + ", ".join(f"{n} {host[n]}" for n in PACKAGES)


COLUMNS = ("native", "native+seccomp", "rade")


def _rotated(columns: Sequence[str], shift: int) -> tuple[str, ...]:
    shift %= len(columns)
    return (*columns[shift:], *columns[:shift])


def measure(root: Path, hosts: NativeHosts, runs: int, steps: int, heat_repeats: int = 1,
            columns: Sequence[str] = COLUMNS) -> dict[str, dict[str, Spread]]:
    """Rotate the columns' order each round (the VM drifts between fast and slow spells); spreads by metric.

    A round is one ping-pong run of each column, then `heat_repeats` heat runs of each, the columns taking
    turns: one heat run's time per step varies by a fifth from run to run on either side (where its
    arrays land in memory, what else the VM's host runs), so a handful of runs cannot tell 2% apart."""
    samples: dict[str, dict[str, list[float]]] = {c: {} for c in columns}
    sizes = f"{LATENCY_SIZE},{BANDWIDTH_SIZE}"
    heat_args = ["--nx", str(HEAT_SIZE), "--ny", str(HEAT_SIZE), "--steps", str(steps), "--every", str(steps)]
    filtered = replace(hosts, label="native+seccomp",
                       rank_wrapper=(sys.executable, str(Path(__file__).with_name("mpi_seccomp.py"))))
    for index in range(runs):
        for where in _rotated(columns, index):
            if where == "rade":
                rows = mpi_native.parse_pingpong(run_job(root, "pingpong", [
                    "python3", "/opt/examples/pingpong.py", "--sizes", sizes]))
            else:
                rows = mpi_native.run_pingpong(hosts if where == "native" else filtered)
            got = samples[where]
            got.setdefault("latency", []).append(rows[LATENCY_SIZE].latency_us)
            got.setdefault("bandwidth", []).append(rows[BANDWIDTH_SIZE].bandwidth_mbps)
            print(f"  run {index + 1}/{runs} {where:<14}: latency {rows[LATENCY_SIZE].latency_us:8.2f} us, "
                  f"bandwidth {rows[BANDWIDTH_SIZE].bandwidth_mbps:9.1f} MB/s, load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr, flush=True)
        for repeat in range(heat_repeats):
            for where in _rotated(columns, index + repeat):
                if where == "rade":
                    heat = mpi_native.parse_heat(run_job(root, "heat",
                                                         ["python3", "/opt/examples/heat.py", *heat_args]))
                else:
                    heat = mpi_native.run_heat(hosts if where == "native" else filtered,
                                               nx=HEAT_SIZE, ny=HEAT_SIZE, steps=steps)
                samples[where].setdefault("heat", []).append(heat.time_per_step_s * 1e3)
                print(f"  run {index + 1}/{runs} {where:<14}: heat {heat.time_per_step_s * 1e3:7.2f} ms/step "
                      f"({repeat + 1}/{heat_repeats}), load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return {where: {metric: spread_of(values) for metric, values in got.items()} for where, got in samples.items()}


METRICS = (
    ("latency", "ping-pong latency 8 B [us]", "pingpong_latency_8B", "lower is better"),
    ("bandwidth", "ping-pong bandwidth 1 MiB [MB/s]", "pingpong_bandwidth_1MiB", "higher is better"),
    ("heat", f"heat {HEAT_SIZE}x{HEAT_SIZE} time/step [ms]", "heat_time_per_step", "lower is better"),
)


def print_table(results: dict[str, dict[str, Spread]], runs: int, steps: int, repeats: int, build: str,
                load: tuple[float, float]) -> None:
    print(f"MPI, 2 ranks on 2 hosts (one CPU each), Open MPI 4.1 over TCP "
          f"({' '.join(f'{k}={v}' for k, v in mpi_native.MCA)}); {runs} rotating runs, heat {runs * repeats} "
          f"runs of {steps} steps; "
          f"spread = (max - min) / median; load average {load[0]:.1f} before, {load[1]:.1f} after")
    print("  native: plain mpirun across two namespace hosts, each rank pinned to its host's CPU (taskset)")
    if "native+seccomp" in results:
        print("  native+seccomp: the same, each rank under rade's seccomp filter only (bench/mpi_seccomp.py)")
    print("  rade: a job on a 2-node dev cluster, one rank a node in its container (cpuset = the node's CPU),"
          " mpirun in node1's, orted through rade-rsh")
    print(build)
    print(f"{'metric':<34} {'where':<15} {'median':>10} {'min':>10} {'max':>10} {'spread':>7}")
    for key, title, _, _ in METRICS:
        for where, got in results.items():
            s = got[key]
            print(f"{title:<34} {where:<15} {s.median:>10.2f} {s.low:>10.2f} {s.high:>10.2f} {s.spread:>6.0%}")
    # Medians first; then each column's best run (least latency and time, most bandwidth), which other work
    # on the machine can only make worse, so on a busy machine the best runs compare what the medians cannot.
    for where in (w for w in results if w != "native"):
        for key, _, name, _ in METRICS:
            print(f"ratio {where}/native {name} {results[where][key].median / results['native'][key].median:.3f}")
    for where in (w for w in results if w != "native"):
        for key, _, name, better in METRICS:
            pick = (lambda s: s.high) if better.startswith("higher") else (lambda s: s.low)
            print(f"ratio {where}/native best_{name} {pick(results[where][key]) / pick(results['native'][key]):.3f}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="MPI in rade vs native, two ranks on two nodes")
    parser.add_argument("--runs", type=int, default=5, help="alternating runs of each (default 5)")
    parser.add_argument("--heat-steps", type=int, default=100, help="heat solver steps per run (default 100)")
    parser.add_argument("--heat-repeats", type=int, default=4,
                        help="heat solver runs of each column per round (default 4)")
    parser.add_argument("--no-seccomp-column", action="store_true",
                        help="leave out the native+seccomp column (a third shorter run)")
    parser.add_argument("--image-root", default=DEFAULT_IMAGE_ROOT,
                        help=f"where the MPI image is built and cached (default {DEFAULT_IMAGE_ROOT})")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.heat_steps < 1 or args.heat_repeats < 1:
        parser.error("--runs, --heat-steps and --heat-repeats must be at least 1")
    if os.geteuid() != 0:
        print("mpi: error: needs root (network namespaces, cgroups)", file=sys.stderr)
        return 125
    signal.signal(signal.SIGTERM, _interrupt)  # so a killed benchmark still removes what it made
    try:
        build_image(Path(args.image_root))
        build = same_build(Path(args.image_root))
        columns = tuple(c for c in COLUMNS if not (args.no_seccomp_column and c == "native+seccomp"))
        before = os.getloadavg()[0]
        with cluster(Path(args.image_root)) as root, mpi_native.make_hosts(HOSTS, NATIVE_BRIDGE) as hosts:
            results = measure(root, hosts, args.runs, args.heat_steps, args.heat_repeats, columns)
    except RadeError as error:
        print(f"mpi: error: {error.message}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        print("mpi: interrupted; cluster and hosts removed", file=sys.stderr)
        return 130
    print_table(results, args.runs, args.heat_steps, args.heat_repeats, build, (before, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
