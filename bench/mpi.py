"""MPI in rade vs native: the same programs, the same Open MPI build, two ranks on two "machines".

rade: a 2-node dev cluster (`rade cluster up`), each node an agent in its own network namespace; the
job's two ranks, one per node, run in the `mpi:bookworm` image, started by `mpirun` in the first node's
container through `rade-rsh`. Each node's agent gets one CPU of its own (node1 CPU 0, node2 CPU 1), so
each rank gets an exclusive core, as each native host does.
native: `bench/mpi_native.py`'s two namespace hosts (one CPU each, a bridge, plain `mpirun` and the host's
Debian Open MPI and mpi4py, which are the image's packages too).

Both sides use TCP between the ranks (`btl tcp,self`). Measured, in alternating runs: ping-pong latency
(8 B) and bandwidth (1 MiB) from examples/mpi/pingpong.py, and the heat solver's time per step (768 x 768,
examples/mpi/heat.py). Prints medians and spreads, then `ratio rade/native` lines. Needs root; removes
the cluster and the hosts on every path. The image is built (or found cached) in --image-root.

    .venv/bin/python bench/mpi.py [--runs 5] [--heat-steps 100]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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
_PREFIX = re.compile(r"^\[task \d+\] ", re.MULTILINE)


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
    """Run `command` on 2 ranks, one per node, as a rade job; its output (without the task prefixes)."""
    spec = {"name": name, "image": IMAGE, "command": command, "resources": {"cpus": 1, "memory": "1G"},
            "env": {"OMPI_MCA_btl": "tcp,self"}, "mpi": {"ranks": 2, "ranks_per_node": 1},
            "placement": {"policy": "spread"}, "time_limit": "10m"}
    path = root / f"{name}.json"
    path.write_text(json.dumps(spec))  # JSON is YAML
    job = rade(root, "submit", str(path)).split()[0]
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        shown = json.loads(rade(root, "show", job, "--json"))
        if shown["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OOM", "NODE_FAIL"):
            break
        if time.monotonic() > deadline:
            rade(root, "cancel", job)
            raise RadeError(f"job {job} ({name}) did not end in {JOB_TIMEOUT:.0f} s")
        time.sleep(0.1)
    out = _PREFIX.sub("", rade(root, "logs", job))
    if shown["state"] != "COMPLETED":
        raise RadeError(f"job {job} ({name}) ended {shown['state']}: {out.strip()[-500:]}")
    return out


def measure(root: Path, hosts: NativeHosts, runs: int, steps: int) -> dict[str, dict[str, Spread]]:
    """Alternate native and rade runs (the VM drifts between fast and slow spells); spreads by metric."""
    samples: dict[str, dict[str, list[float]]] = {"native": {}, "rade": {}}
    sizes = f"{LATENCY_SIZE},{BANDWIDTH_SIZE}"
    heat_args = ["--nx", str(HEAT_SIZE), "--ny", str(HEAT_SIZE), "--steps", str(steps), "--every", str(steps)]
    for index in range(runs):
        order = ("native", "rade") if index % 2 == 0 else ("rade", "native")
        for where in order:
            if where == "native":
                rows = mpi_native.run_pingpong(hosts)
                heat = mpi_native.run_heat(hosts, nx=HEAT_SIZE, ny=HEAT_SIZE, steps=steps)
            else:
                rows = mpi_native.parse_pingpong(run_job(root, "pingpong", [
                    "python3", "/opt/examples/pingpong.py", "--sizes", sizes]))
                heat = mpi_native.parse_heat(run_job(root, "heat", ["python3", "/opt/examples/heat.py", *heat_args]))
            got = samples[where]
            got.setdefault("latency", []).append(rows[LATENCY_SIZE].latency_us)
            got.setdefault("bandwidth", []).append(rows[BANDWIDTH_SIZE].bandwidth_mbps)
            got.setdefault("heat", []).append(heat.time_per_step_s * 1e3)
            print(f"  run {index + 1}/{runs} {where:<6}: latency {rows[LATENCY_SIZE].latency_us:8.2f} us, "
                  f"bandwidth {rows[BANDWIDTH_SIZE].bandwidth_mbps:9.1f} MB/s, heat "
                  f"{heat.time_per_step_s * 1e3:7.2f} ms/step", file=sys.stderr, flush=True)
    return {where: {metric: spread_of(values) for metric, values in got.items()} for where, got in samples.items()}


METRICS = (
    ("latency", "ping-pong latency 8 B [us]", "pingpong_latency_8B", "lower is better"),
    ("bandwidth", "ping-pong bandwidth 1 MiB [MB/s]", "pingpong_bandwidth_1MiB", "higher is better"),
    ("heat", f"heat {HEAT_SIZE}x{HEAT_SIZE} time/step [ms]", "heat_time_per_step", "lower is better"),
)


def print_table(results: dict[str, dict[str, Spread]], runs: int, steps: int) -> None:
    print(f"MPI, 2 ranks on 2 nodes (one core each), Open MPI 4.1 over TCP; {runs} alternating runs, "
          f"heat {steps} steps; spread = (max - min) / median")
    print("  rade: a job on a 2-node dev cluster, mpirun in node1's container, orted started through rade-rsh")
    print("  native: plain mpirun across two namespace hosts (bench/mpi_native.py)")
    print(f"{'metric':<34} {'where':<7} {'median':>10} {'min':>10} {'max':>10} {'spread':>7}")
    for key, title, _, _ in METRICS:
        for where in ("native", "rade"):
            s = results[where][key]
            print(f"{title:<34} {where:<7} {s.median:>10.2f} {s.low:>10.2f} {s.high:>10.2f} {s.spread:>6.0%}")
    for key, _, name, _ in METRICS:
        print(f"ratio rade/native {name} {results['rade'][key].median / results['native'][key].median:.3f}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="MPI in rade vs native, two ranks on two nodes")
    parser.add_argument("--runs", type=int, default=5, help="alternating runs of each (default 5)")
    parser.add_argument("--heat-steps", type=int, default=100, help="heat solver steps per run (default 100)")
    parser.add_argument("--image-root", default=DEFAULT_IMAGE_ROOT,
                        help=f"where the MPI image is built and cached (default {DEFAULT_IMAGE_ROOT})")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.heat_steps < 1:
        parser.error("--runs and --heat-steps must be at least 1")
    if os.geteuid() != 0:
        print("mpi: error: needs root (network namespaces, cgroups)", file=sys.stderr)
        return 125
    signal.signal(signal.SIGTERM, _interrupt)  # so a killed benchmark still removes what it made
    try:
        build_image(Path(args.image_root))
        with cluster(Path(args.image_root)) as root, mpi_native.make_hosts(HOSTS, NATIVE_BRIDGE) as hosts:
            results = measure(root, hosts, args.runs, args.heat_steps)
    except RadeError as error:
        print(f"mpi: error: {error.message}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        print("mpi: interrupted; cluster and hosts removed", file=sys.stderr)
        return 130
    print_table(results, args.runs, args.heat_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
