"""Native MPI baseline: the example programs run by plain `mpirun` across two test hosts made of namespaces.

What a rade MPI job is measured against. Two "hosts" are network namespaces joined by a bridge with no
route out (addresses in 198.18.0.0/15); each gets its own UTS namespace (hostname = host name) and its own
CPUs, as two machines would have. `mpirun` runs in the first host and starts its daemon on the second
through an rsh agent that enters that host's namespaces, so the ranks talk TCP over the bridge with the
host's own Debian Open MPI and mpi4py (/usr/bin/python3), the same build as in the `mpi:bookworm` image.

Used as a module by the rade-vs-native benchmark (`make_hosts()`, `run_pingpong()`, `run_heat()`), and
runnable alone: alternating runs of ping-pong (8 B latency, 1 MiB bandwidth) and the heat solver (time
per step) across the two hosts and, as the in-run baseline, on one host over loopback TCP; prints medians
and spread, then `ratio` lines. Everything it makes (namespaces, links, processes) is removed on every
path, Ctrl-C included; it needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jobs.errors import RadeError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "mpi"
SYSTEM_PYTHON = "/usr/bin/python3"
BRIDGE = "rade-mb0"
HOST_NAMES = ("rade-mpi-a", "rade-mpi-b")
SUBNET_PREFIX = "198.18.250."
INTERFACE = "rade0"
RUN_TIMEOUT = 300.0
# The Open MPI parameters of every run here and of the rade jobs bench/mpi.py compares with: TCP between
# the ranks (what a job's ranks on two nodes use), and no binding by Open MPI, since each host's CPUs (or
# each rade task's cpuset) confine its ranks already; left to itself, Open MPI on a namespace host would
# bind its first rank to core 0 of the whole machine.
MCA = (("btl", "tcp,self"), ("hwloc_base_binding_policy", "none"))
LATENCY_SIZE = 8
BANDWIDTH_SIZE = 1 << 20


class NativeRunError(RadeError):
    """A native MPI run or the test hosts for it could not be made."""


# The rsh agent Open MPI calls as `AGENT HOST WORDS...`; like ssh, it joins WORDS into one shell command
# (orted's arguments arrive quoted for a shell). It enters the host's netns, pins to the host's CPUs and
# takes a UTS namespace named after the host, so Open MPI's per-host session directories stay apart.
# Like sshd, it runs the command in a session of its own: with the kernel's autogroup scheduling, a
# session's processes share one CPU weight, so ranks on two hosts left in mpirun's session would split one
# share between them under load, where two machines (or a rade job's containers) each have a whole one.
AGENT_SCRIPT = """#!/bin/sh
host="$1"; shift
case "$host" in
{cases}
  *) echo "rade-mpi-agent: unknown test host '$host'" >&2; exit 255;;
esac
exec ip netns exec "$host" taskset -c "$cpus" setsid --wait unshare --uts -- \\
  /bin/sh -c 'hostname "$0" && exec /bin/sh -c "$*"' "$host" "$@"
"""


def mca_args(params: Sequence[tuple[str, str]] = MCA) -> list[str]:
    """`mpirun` options setting Open MPI's parameters `params`."""
    return [word for key, value in params for word in ("--mca", key, value)]


def mca_env(params: Sequence[tuple[str, str]] = MCA) -> dict[str, str]:
    """The same parameters as environment variables (how a rade job passes them to its `mpirun`)."""
    return {f"OMPI_MCA_{key}": value for key, value in params}


@dataclass(frozen=True, slots=True)
class TestHost:
    """One namespace host: its netns (also its hostname), its address on the bridge, its CPUs."""

    name: str
    address: str
    cpus: str
    link: str  # the bridge end of its veth pair, in the root namespace


class MpiTarget(Protocol):
    """Where a native `mpirun` runs: gives the argv that starts `mpirun` with `command` on `ranks` ranks."""

    label: str

    def mpirun_argv(self, ranks: int, command: Sequence[str]) -> list[str]: ...

    def leftover_pids(self) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class NativeHosts:
    """Test hosts made by `make_hosts()`, with the rsh agent and hostfile that span them."""

    hosts: tuple[TestHost, ...]
    agent: Path
    hostfile: Path
    label: str = "netns"
    rank_wrapper: tuple[str, ...] = ()  # what each rank's command runs under (e.g. a seccomp filter)

    def mpirun_argv(self, ranks: int, command: Sequence[str]) -> list[str]:
        # No interface named: a host has only lo (which Open MPI leaves out) and its link to the bridge, as
        # a dev-cluster node has.
        mpirun = [
            "mpirun", "--allow-run-as-root", "--hostfile", str(self.hostfile), "-np", str(ranks),
            "--map-by", "node", "--mca", "plm_rsh_agent", str(self.agent), *mca_args(),
            *self.rank_wrapper, *command,
        ]
        return [str(self.agent), self.hosts[0].name, shlex.join(mpirun)]

    def leftover_pids(self) -> list[int]:
        pids: list[int] = []
        for host in self.hosts:
            out = subprocess.run(["ip", "netns", "pids", host.name], capture_output=True, text=True, check=False)
            pids += [int(word) for word in out.stdout.split()]
        return pids


@dataclass(frozen=True, slots=True)
class LoopbackHost:
    """The in-run baseline: both ranks on this machine, TCP over loopback, each rank free to use any CPU."""

    label: str = "loopback"

    def mpirun_argv(self, ranks: int, command: Sequence[str]) -> list[str]:
        return ["mpirun", "--allow-run-as-root", "-np", str(ranks), *mca_args(),
                "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo", *command]

    def leftover_pids(self) -> list[int]:
        return []


@dataclass(frozen=True, slots=True)
class PingPong:
    """One message size of a ping-pong run."""

    size: int
    iterations: int
    latency_us: float
    bandwidth_mbps: float


@dataclass(frozen=True, slots=True)
class HeatRun:
    """The summary line of a heat solver run."""

    ranks: int
    nx: int
    ny: int
    steps: int
    time_per_step_s: float
    total_s: float
    l2: float
    checksum: float


def _ip(*args: str, check: bool = True) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NativeRunError(f"ip {' '.join(args)}: {proc.stderr.strip()}", "run as root with iproute2 installed")


def remove_hosts(names: Sequence[str] = HOST_NAMES, bridge: str = BRIDGE) -> None:
    """Remove the test hosts' processes, links, namespaces and bridge; safe to repeat, and when none exist."""
    existing = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                  check=False).stdout.split())
    for name in names:
        if name in existing:
            out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
            _kill_pids([int(word) for word in out.stdout.split()])
    for name in names:
        # The root-side end is deleted explicitly: deleting a netns frees its links only asynchronously.
        _ip("link", "del", link_name(name), check=False)
    for name in names:
        if name in existing:
            _ip("netns", "del", name, check=False)
    _ip("link", "del", bridge, check=False)


def link_name(host: str) -> str:
    """The root-namespace end of a host's veth pair (interface names have at most 15 bytes)."""
    return f"{host}-h"


def _cpu_sets(count: int) -> list[str]:
    """Disjoint CPU lists for `count` hosts (shared round-robin when there are fewer CPUs than hosts)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < count:
        return [str(cpus[i % len(cpus)]) for i in range(count)]
    share = len(cpus) // count
    return [",".join(str(c) for c in cpus[i * share:(i + 1) * share]) for i in range(count)]


@contextlib.contextmanager
def make_hosts(names: Sequence[str] = HOST_NAMES, bridge: str = BRIDGE) -> Iterator[NativeHosts]:
    """Make the namespace hosts, bridge and rsh agent; remove everything on leaving, whatever happened."""
    if os.geteuid() != 0:
        raise NativeRunError("the native MPI hosts need root (network namespaces, veth links)", "run as root")
    if too_long := [name for name in (*names, bridge) if len(link_name(name)) > 15]:
        raise NativeRunError(f"test host or bridge names too long for interface names: {', '.join(too_long)}",
                             "use at most 13 characters")
    remove_hosts(names, bridge)  # what a killed earlier run may have left
    hosts = tuple(TestHost(name, f"{SUBNET_PREFIX}{index + 1}", cpus, link_name(name))
                  for index, (name, cpus) in enumerate(zip(names, _cpu_sets(len(names)))))
    workdir = Path(tempfile.mkdtemp(prefix="rade-mpi-native-"))
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("link", "set", bridge, "up")
        for host in hosts:
            _ip("netns", "add", host.name)
            _ip("link", "add", host.link, "type", "veth", "peer", "name", INTERFACE, "netns", host.name)
            _ip("link", "set", host.link, "master", bridge, "up")
            _ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", INTERFACE)
            _ip("-n", host.name, "link", "set", INTERFACE, "up")
            _ip("-n", host.name, "link", "set", "lo", "up")
        agent = workdir / "rade-mpi-agent"
        cases = "\n".join(f"  {shlex.quote(h.name)}) cpus={shlex.quote(h.cpus)};;" for h in hosts)
        agent.write_text(AGENT_SCRIPT.format(cases=cases), encoding="utf-8")
        agent.chmod(0o755)
        hostfile = workdir / "hostfile"
        hostfile.write_text("".join(f"{h.name} slots=1\n" for h in hosts), encoding="utf-8")
        yield NativeHosts(hosts, agent, hostfile)
    finally:
        remove_hosts(names, bridge)
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()


def is_alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent to reap it no longer does)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _kill_pids(pids: Sequence[int], grace: float = 5.0) -> None:
    """SIGKILL each process and wait (up to `grace` seconds) until all have exited.

    A pidfd, unlike the pid, cannot come to name another process, and it becomes readable when the
    process exits even though it is not our child.
    """
    fds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds.append(os.pidfd_open(pid))
    try:
        for fd in fds:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        deadline = time.monotonic() + grace
        waiting = list(fds)
        while waiting and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(waiting, [], [], left)
            waiting = [fd for fd in waiting if fd not in ready]
    finally:
        for fd in fds:
            os.close(fd)


def mpirun(target: MpiTarget, ranks: int, command: Sequence[str], timeout: float = RUN_TIMEOUT) -> str:
    """Run `command` on `ranks` ranks of `target`; its standard output, or NativeRunError on failure.

    mpirun gets its own session so that it and everything it started can be killed together on timeout
    or Ctrl-C; processes it started on the other hosts are found through their namespace.
    """
    proc = subprocess.Popen(target.mpirun_argv(ranks, command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True, close_fds=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        _kill_pids(target.leftover_pids())
        raise
    _kill_pids(target.leftover_pids())
    if proc.returncode != 0:
        tail = " | ".join(line for line in err.strip().splitlines()[-3:] if line.strip())
        raise NativeRunError(f"mpirun {shlex.join(command)} on {target.label} exited {proc.returncode}: {tail}",
                             "check Open MPI, python3-mpi4py and python3-numpy are installed")
    return out


_PINGPONG = re.compile(r"^pingpong size=(\d+) iterations=(\d+) latency_us=([\d.eE+-]+) bandwidth_MBps=([\d.eE+-]+)$",
                       re.MULTILINE)
_HEAT = re.compile(r"^heat (.*)$", re.MULTILINE)


def parse_pingpong(text: str) -> dict[int, PingPong]:
    """The machine-readable lines of pingpong.py's output, by message size."""
    rows = {int(m[1]): PingPong(int(m[1]), int(m[2]), float(m[3]), float(m[4])) for m in _PINGPONG.finditer(text)}
    if not rows:
        raise NativeRunError("pingpong.py printed no result lines", "run it by hand to see its output")
    return rows


def parse_heat(text: str) -> HeatRun:
    """The last summary line of heat.py's output."""
    lines = _HEAT.findall(text)
    if not lines:
        raise NativeRunError("heat.py printed no summary line", "run it by hand to see its output")
    fields = dict(word.split("=", 1) for word in lines[-1].split())
    return HeatRun(int(fields["ranks"]), int(fields["nx"]), int(fields["ny"]), int(fields["steps"]),
                   float(fields["time_per_step_s"]), float(fields["total_s"]), float(fields["l2"]),
                   float(fields["checksum"]))


def run_pingpong(target: MpiTarget, sizes: Sequence[int] = (LATENCY_SIZE, BANDWIDTH_SIZE),
                 iterations: int = 0, python: str = SYSTEM_PYTHON) -> dict[int, PingPong]:
    """One ping-pong run between two ranks of `target`, by message size."""
    command = [python, str(EXAMPLES / "pingpong.py"), "--sizes", ",".join(str(s) for s in sizes)]
    if iterations:
        command += ["--iterations", str(iterations)]
    return parse_pingpong(mpirun(target, 2, command))


def run_heat(target: MpiTarget, nx: int = 768, ny: int = 768, steps: int = 200, ranks: int = 2,
             python: str = SYSTEM_PYTHON) -> HeatRun:
    """One heat solver run on `ranks` ranks of `target`."""
    command = [python, str(EXAMPLES / "heat.py"), "--nx", str(nx), "--ny", str(ny), "--steps", str(steps),
               "--every", str(steps)]
    return parse_heat(mpirun(target, ranks, command))


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and range of repeated measurements; `spread` is (max - min) / median."""

    median: float
    low: float
    high: float

    @property
    def spread(self) -> float:
        return (self.high - self.low) / self.median if self.median else 0.0


def spread_of(values: Sequence[float]) -> Spread:
    return Spread(statistics.median(values), min(values), max(values))


def measure(targets: Sequence[MpiTarget], runs: int, heat_steps: int) -> dict[str, dict[str, Spread]]:
    """Alternate the runs over the targets (the VM drifts between fast and slow spells); spreads by metric."""
    samples: dict[str, dict[str, list[float]]] = {t.label: {} for t in targets}
    for _ in range(runs):
        for target in targets:
            rows = run_pingpong(target)
            heat = run_heat(target, steps=heat_steps)
            got = samples[target.label]
            got.setdefault("latency", []).append(rows[LATENCY_SIZE].latency_us)
            got.setdefault("bandwidth", []).append(rows[BANDWIDTH_SIZE].bandwidth_mbps)
            got.setdefault("heat", []).append(heat.time_per_step_s * 1e3)
    return {label: {metric: spread_of(values) for metric, values in got.items()} for label, got in samples.items()}


METRICS = (
    ("latency", "ping-pong latency 8 B [us]", "pingpong_latency_8B"),
    ("bandwidth", "ping-pong bandwidth 1 MiB [MB/s]", "pingpong_bandwidth_1MiB"),
    ("heat", "heat 768x768 time/step [ms]", "heat_time_per_step"),
)


def print_table(results: dict[str, dict[str, Spread]], runs: int, hosts: NativeHosts) -> None:
    print(f"native Open MPI, 2 ranks, TCP; {runs} alternating runs; spread = (max - min) / median")
    print(f"  netns: ranks on two namespace hosts ({', '.join(h.name for h in hosts.hosts)}), 1 rank and "
          f"CPUs {' / '.join(h.cpus for h in hosts.hosts)}, over a bridge")
    print("  loopback: both ranks on this machine over lo (the baseline)")
    print(f"{'metric':<34} {'where':<9} {'median':>10} {'min':>10} {'max':>10} {'spread':>7}")
    for key, title, _ in METRICS:
        for label, got in results.items():
            s = got[key]
            print(f"{title:<34} {label:<9} {s.median:>10.2f} {s.low:>10.2f} {s.high:>10.2f} {s.spread:>6.0%}")
    for key, _, name in METRICS:
        netns, loopback = results["netns"][key].median, results["loopback"][key].median
        print(f"ratio netns/loopback {name} {netns / loopback:.3f}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="native MPI baseline across two namespace hosts")
    parser.add_argument("--runs", type=int, default=7, help="alternating runs per target (default 7)")
    parser.add_argument("--heat-steps", type=int, default=200, help="heat solver steps per run (default 200)")
    parser.add_argument("--hosts", default=",".join(HOST_NAMES),
                        help=f"names of the two namespace hosts (default {','.join(HOST_NAMES)})")
    parser.add_argument("--bridge", default=BRIDGE, help=f"name of their bridge (default {BRIDGE})")
    args = parser.parse_args(argv)
    names = tuple(args.hosts.split(","))
    if args.runs < 1 or args.heat_steps < 1:
        parser.error("--runs and --heat-steps must be at least 1")
    if len(names) != 2 or not all(names):
        parser.error("--hosts takes two names, e.g. rade-mpi-a,rade-mpi-b")
    signal.signal(signal.SIGTERM, _interrupt)  # so a killed benchmark still removes its hosts
    try:
        with make_hosts(names, args.bridge) as hosts:
            results = measure([hosts, LoopbackHost()], args.runs, args.heat_steps)
    except RadeError as error:
        print(f"mpi_native: error: {error}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        print("mpi_native: interrupted; test hosts removed", file=sys.stderr)
        return 130
    print_table(results, args.runs, hosts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
