"""The local dev cluster: a scheduler and N node agents on this machine, each agent a "host" of its own.

`up` makes the bridge `rade-cl0` (198.18.0.1/24, no route out), starts the scheduler listening on it,
and for each node a test host `rade-nodeI` (its own network namespace at 198.18.0.1I, hostname `nodeI`)
running `rade agent` in that namespace and a new UTS namespace. When that bridge exists already (another
root's cluster), the next free slot K is used: bridge `rade-clK`, 198.18.K.0/24, hosts `rade-K-nodeI`. Every process shares one state root,
so the image store, the containers' logs and the scheduler's endpoints file are the same for all: a
client given the same root (or none: the default) finds the cluster without flags.

What `up` made is written to ROOT/cluster/cluster.json as it is made (under ROOT/cluster/lock), so
`down` undoes exactly that even after a half-finished `up`: it stops every process it started, by PID
(checked against the process's start time, so a reused PID is never hit), the containers left on the
nodes, and removes every namespace, link and the bridge. Processes are started detached (their own
session, stdio to log files in ROOT/cluster) and are not daemons themselves.

The cluster authenticates as a real one does: `up` makes its keys in ROOT/cluster/keys (the scheduler's
pair, the agent key, and a key for the user who ran `up`, which the client finds there), and the
scheduler runs with `auth: curve`, that user as admin, volumes allowed from /home, /scratch and /tmp, and
512 processes a task.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from ipaddress import IPv4Interface
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.errors import RadeError

if TYPE_CHECKING:
    from engine.network.testhost import TestHost

MAX_SLOTS = 64
SLOTS_LOCK = "/run/rade-devcluster.lock"
AGENT_PORT = 7410
CLIENT_PORT = 7411
MAX_NODES = 200
STATE_VERSION = 1


class ClusterError(RadeError):
    """The dev cluster cannot be made, found or taken down."""


class ClusterAlreadyUp(ClusterError):
    """`up` on a root whose cluster is up: nothing was made."""


@dataclass(frozen=True, slots=True)
class Process:
    """A process `up` started: its PID and start time (clock ticks since boot) to know it again."""

    pid: int
    start_time: int
    log: str


@dataclass(frozen=True, slots=True)
class NodeEntry:
    name: str  # the node's name, and its hostname
    netns: str  # the test host (namespace) name
    address: str
    host_link: str
    agent: Process | None = None


@dataclass(slots=True)
class ClusterState:
    root: str
    slot: int = 0
    bridge: str = ""  # set once the slot is chosen: `down` must never remove another cluster's bridge
    gateway: str = ""
    scheduler: Process | None = None
    nodes: list[NodeEntry] = field(default_factory=list)

    @property
    def gateway_ip(self) -> str:
        return self.gateway.split("/")[0]


def cluster_dir(root: str) -> Path:
    return Path(root, "cluster")


def state_path(root: str) -> Path:
    return cluster_dir(root) / "cluster.json"


def bridge_name(slot: int) -> str:
    return f"rade-cl{slot}"


def gateway(slot: int) -> IPv4Interface:
    """Slot 0 is 198.18.0.1/24, slot K 198.18.K.1/24."""
    return IPv4Interface(f"198.18.{slot}.1/24")


def netns_name(slot: int, node: str) -> str:
    """Slot 0's test hosts are rade-node1..N; another slot's rade-K-node1..N (hostnames are node1..N in all)."""
    return f"rade-{node}" if slot == 0 else f"rade-{slot}-{node}"


@contextlib.contextmanager
def _locked_path(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(root: str) -> Iterator[None]:
    cluster_dir(root).mkdir(parents=True, exist_ok=True)
    with _locked_path(cluster_dir(root) / "lock"):
        yield


def load_state(root: str) -> ClusterState | None:
    try:
        data = json.loads(state_path(root).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ClusterError(f"{state_path(root)}: unreadable: {err}", "remove it if no cluster runs") from None
    if data.pop("version", None) != STATE_VERSION:
        raise ClusterError(f"{state_path(root)}: written by another rade version")
    scheduler = Process(**data.pop("scheduler")) if data.get("scheduler") else None
    nodes = [NodeEntry(**{**n, "agent": Process(**n["agent"]) if n.get("agent") else None})
             for n in data.pop("nodes", [])]
    return ClusterState(scheduler=scheduler, nodes=nodes, **data)


def _save(state: ClusterState) -> None:
    path = state_path(state.root)
    tmp = path.with_name(".cluster.json.tmp")
    tmp.write_text(json.dumps({"version": STATE_VERSION, **asdict(state)}, indent=1))
    os.replace(tmp, path)


# -- processes ------------------------------------------------------------------------------------------------

def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if there is no such process (or only its
    zombie, waiting for a parent to collect its status)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def is_alive(proc: Process | None) -> bool:
    return proc is not None and start_time(proc.pid) == proc.start_time


def _spawn(argv: list[str], log: Path) -> Process:
    with open(log, "ab") as out:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                 close_fds=True)
    child.returncode = 0  # detached on purpose: no "still running" warning when this object goes
    started = start_time(child.pid)
    return Process(child.pid, started if started is not None else -1, str(log))


def stop_process(proc: Process | None, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL; only if it is still the process that was started."""
    if not is_alive(proc):
        return
    assert proc is not None
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return
    try:
        if not is_alive(proc):
            return
        os.kill(proc.pid, signal.SIGTERM)
        if not select.select([pidfd], [], [], timeout)[0]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], timeout)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
    try:
        os.waitpid(proc.pid, os.WNOHANG)  # when the caller started it (tests do): collect its status
    except ChildProcessError:
        pass


def netns_inode(netns: str) -> tuple[int, int] | None:
    """The identity (device, inode) of a named network namespace; None when it does not exist."""
    try:
        st = os.stat(f"/run/netns/{netns}")
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def processes_in(namespace: tuple[int, int] | None) -> list[int]:
    """The PIDs of every process in a network namespace (by its identity from `netns_inode`)."""
    if namespace is None:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                st = os.stat(f"/proc/{entry.name}/ns/net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == namespace:
                found.append(int(entry.name))
    return found


def kill_processes_in(namespace: tuple[int, int] | None, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process in the namespace (through pidfds: a reused PID is never hit) and wait for
    them; the PIDs killed."""
    killed = []
    for pid in processes_in(namespace):
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
            if (st.st_dev, st.st_ino) != namespace:
                continue  # gone and reused between the scan and the pidfd
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], timeout)
            killed.append(pid)
        except (ProcessLookupError, FileNotFoundError):
            pass
        finally:
            os.close(pidfd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return killed


def _rade(root: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "rade", "--root", root, *args]


def start_scheduler(state: ClusterState) -> Process:
    """Start the cluster's scheduler (again: it resumes from its state database)."""
    cdir = cluster_dir(state.root)
    return _spawn(_rade(state.root, "scheduler", "--config", str(cdir / "scheduler.yaml")), cdir / "scheduler.log")


def start_agent(state: ClusterState, node: NodeEntry) -> Process:
    """Start a node's agent inside its test host (again: it adopts the containers it finds)."""
    cdir = cluster_dir(state.root)
    # Entering the namespaces happens in a small exec wrapper, not between fork and exec here: the caller
    # may have threads (ZeroMQ's), and Python code after fork is unsafe then.
    enter = [sys.executable, "-m", "rade.devcluster", "enter", node.netns, node.name, node.address, node.host_link,
             state.bridge, "--"]
    argv = _rade(state.root, "agent", "--scheduler", f"tcp://{state.gateway_ip}:{AGENT_PORT}", "--name", node.name,
                 "--config", str(cdir / f"{node.name}.yaml"))
    return _spawn(enter + argv, cdir / f"{node.name}.log")


def host_of(state: ClusterState, node: NodeEntry) -> TestHost:
    """The test host a node's agent runs in (to cut its link, as a failure would)."""
    from engine.network.netns import netns_path
    from engine.network.testhost import TestHost

    return TestHost(node.netns, node.name, netns_path(node.netns), IPv4Interface(node.address), node.host_link,
                    state.bridge)


def restart(root: str, scheduler: bool = False, nodes: tuple[str, ...] = ()) -> ClusterState:
    """Start again the scheduler and/or the named nodes' agents when they are not running."""
    root = os.path.abspath(root)
    with _locked(root):
        state = load_state(root)
        if state is None:
            raise ClusterError(f"no dev cluster is up on {root}", "start one with 'rade cluster up'")
        if scheduler and not is_alive(state.scheduler):
            state.scheduler = start_scheduler(state)
        for i, node in enumerate(state.nodes):
            if node.name in nodes and not is_alive(node.agent):
                state.nodes[i] = replace(node, agent=start_agent(state, node))
        _save(state)
        return state


# -- up, down, status -----------------------------------------------------------------------------------------

def up(root: str, nodes: int, labels: dict[str, dict[str, str]] | None = None, heartbeat: float = 2.0,
       timeout: float = 30.0) -> ClusterState:
    """Make the cluster and wait until every node has registered; ClusterError if one is already up."""
    from engine.network.testhost import BridgeSpec, create_test_host, ensure_bridge

    if not 1 <= nodes <= MAX_NODES:
        raise ClusterError(f"--nodes {nodes}: a dev cluster has 1 to {MAX_NODES} nodes")
    root = os.path.abspath(root)
    with _locked(root):
        old = load_state(root)
        if old is not None:
            raise ClusterAlreadyUp(f"a dev cluster is already up on {root}",
                               "see 'rade cluster status'; 'rade cluster down' removes it")
        cdir = cluster_dir(root)
        state = ClusterState(root=root)
        _save(state)
        with _locked_path(Path(SLOTS_LOCK)):
            # One dev cluster per slot on this machine: the first slot whose bridge does not exist yet.
            state.slot = next((k for k in range(MAX_SLOTS) if not os.path.exists(f"/sys/class/net/{bridge_name(k)}")),
                              -1)
            if state.slot < 0:
                raise ClusterError(f"{MAX_SLOTS} dev clusters are up on this machine", "take one down first")
            state.bridge, state.gateway = bridge_name(state.slot), str(gateway(state.slot))
            bridge = BridgeSpec(state.bridge, gateway(state.slot))
            ensure_bridge(bridge)
            _save(state)
        net = gateway(state.slot)
        keys = make_keys(root)
        # JSON is YAML: the file the scheduler reads, every value quoted as it must be.
        (cdir / "scheduler.yaml").write_text(json.dumps({
            "agents": f"tcp://{net.ip}:{AGENT_PORT}", "clients": f"tcp://{net.ip}:{CLIENT_PORT}",
            "heartbeat_interval": heartbeat, "misses": 3, "auth": "curve", "keys": str(keys.path),
            "admins": sorted({"root", _user()}), "allowed_volumes": list(ALLOWED_VOLUMES),
            "pids_limit": PIDS_LIMIT}, indent=1) + "\n")
        state.scheduler = start_scheduler(state)
        _save(state)
        for index in range(1, nodes + 1):
            name = f"node{index}"
            address = IPv4Interface(f"{net.network.network_address + 10 + index}/{net.network.prefixlen}")
            host = create_test_host(netns_name(state.slot, name), name, bridge, address)
            entry = NodeEntry(name, host.name, str(address), host.host_link)
            state.nodes.append(entry)
            _save(state)
            (cdir / f"{name}.yaml").write_text(json.dumps({"labels": (labels or {}).get(name, {}),
                                                            "keys": str(keys.path)}))
            state.nodes[-1] = replace(entry, agent=start_agent(state, entry))
            _save(state)
    wait_for_nodes(root, state, timeout)
    return state


ALLOWED_VOLUMES = ("/home", "/scratch", "/tmp")
# Every node of a dev cluster shares this machine's process table: a task's share is kept small.
PIDS_LIMIT = 512


def _user() -> str:
    from rade.client import current_user

    return current_user()


def key_dir(root: str):
    from jobs.keyfiles import KeyDir

    return KeyDir(cluster_dir(root) / "keys")


def make_keys(root: str):
    """The cluster's keys (made once; kept across `down` and `up` so issued user keys stay valid)."""
    from rade.commands.keys import init_keys, issue_user_key

    keys = key_dir(root)
    if not keys.has_scheduler_key():
        init_keys(keys)
    user = _user()
    if not keys.user_secret(user).exists():
        issue_user_key(keys, user, str(keys.user_secret(user)))
    return keys


def wait_for_nodes(root: str, state: ClusterState, timeout: float) -> None:
    """Until the scheduler lists every node as up; ClusterError naming what is missing otherwise."""
    from rade.client import SchedulerClient, SchedulerUnreachable, find_scheduler

    deadline = time.monotonic() + timeout
    wanted = {n.name for n in state.nodes}
    missing = wanted
    with SchedulerClient(find_scheduler(f"tcp://{state.gateway_ip}:{CLIENT_PORT}", root), timeout=2.0,
                         root=root) as client:
        while time.monotonic() < deadline:
            dead = [n.name for n in state.nodes if not is_alive(n.agent)]
            if not is_alive(state.scheduler) or dead:
                what = "the scheduler" if not is_alive(state.scheduler) else f"the agent of {', '.join(dead)}"
                raise ClusterError(f"{what} exited while the cluster came up",
                                   f"see the logs in {cluster_dir(root)}; then 'rade cluster down'")
            try:
                up_nodes = {r["name"] for r in client.nodes() if r["state"] != "DOWN"}
            except SchedulerUnreachable:
                up_nodes = set()
            missing = wanted - up_nodes
            if not missing:
                return
            time.sleep(0.1)
    raise ClusterError(f"not registered within {timeout:g}s: {', '.join(sorted(missing))}",
                       f"see the logs in {cluster_dir(root)}; then 'rade cluster down'")


def down(root: str) -> list[str]:
    """Take the cluster down; what was removed, one line each. Safe to repeat."""
    from agent.tasks import stop_leftovers
    from engine.network.testhost import remove_bridge, remove_test_host

    root = os.path.abspath(root)
    done: list[str] = []
    with _locked(root):
        state = load_state(root)
        if state is None:
            return done
        for node in state.nodes:
            if is_alive(node.agent):
                stop_process(node.agent)
                done.append(f"agent {node.name} (pid {node.agent.pid})")
        for node in state.nodes:
            count = stop_leftovers(root, node.name)
            if count:
                done.append(f"{count} containers of {node.name}")
        if is_alive(state.scheduler):
            stop_process(state.scheduler)
            done.append(f"scheduler (pid {state.scheduler.pid})")
        for node in state.nodes:
            # What an agent forked and left behind when it was killed (its helpers) lives on in the test
            # host's namespace; nothing else can be in there.
            for pid in kill_processes_in(netns_inode(node.netns)):
                done.append(f"process {pid} left in {node.netns}")
        for node in state.nodes:
            remove_test_host(node.netns, node.host_link)
            done.append(f"test host {node.netns} ({node.address})")
        if state.bridge and remove_bridge(state.bridge):
            done.append(f"bridge {state.bridge}")
        state_path(root).unlink()
    return done


def status(root: str) -> list[dict[str, Any]]:
    """One row a process: role, name, pid, whether it runs, address, log."""
    state = load_state(os.path.abspath(root))
    if state is None:
        return []
    rows = [{"role": "scheduler", "name": "scheduler", "pid": state.scheduler.pid if state.scheduler else None,
             "running": is_alive(state.scheduler), "address": state.gateway_ip, "netns": "",
             "log": state.scheduler.log if state.scheduler else ""}]
    for node in state.nodes:
        rows.append({"role": "agent", "name": node.name, "pid": node.agent.pid if node.agent else None,
                     "running": is_alive(node.agent), "address": node.address.split("/")[0],
                     "netns": node.netns if os.path.exists(f"/run/netns/{node.netns}") else f"{node.netns} (gone)",
                     "log": node.agent.log if node.agent else ""})
    return rows


def main(argv: list[str]) -> int:
    """`python -m rade.devcluster enter NETNS HOSTNAME ADDRESS LINK BRIDGE -- COMMAND...`: become a process
    of a test host (its network namespace, a new UTS namespace with its hostname), then exec COMMAND."""
    from engine.network.netns import netns_path
    from engine.network.testhost import TestHost, enter_test_host

    if len(argv) < 8 or argv[0] != "enter" or argv[6] != "--":
        sys.stderr.write("usage: python -m rade.devcluster enter NETNS HOSTNAME ADDRESS LINK BRIDGE -- COMMAND...\n")
        return 2
    netns, hostname, address, link, bridge = argv[1:6]
    enter_test_host(TestHost(netns, hostname, netns_path(netns), IPv4Interface(address), link, bridge))
    os.execv(argv[7], argv[7:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
