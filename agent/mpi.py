"""MPI wiring of a task: what turns one container per node into one `mpirun` job across the nodes.

For a task of a job with an `mpi:` section the agent writes a small directory (ROOT/agent/<node>/mpi/
<job>.<task>.<attempt>/), mounted read-only at /run/rade in the container:

    hostfile   every node of the job with its slots (its ranks), in rank order
    hosts      the node's /etc/hosts with every node of the job and its address, mounted at /etc/hosts,
               so the names in the hostfile resolve in the containers (Hydra's proxies call back by name)
    key        the job's rsh secret (`agent.rsh.job_secret`), so `rade-rsh` can prove it is this job
    job.json   the job id and attempt, this node, every node's address and the agents' rsh port
    rade-rsh   the rsh agent `mpirun` calls to start its daemons on the other nodes (`agent/rsh.py`)

and sets the environment Open MPI and MPICH read (their rsh agent, the hostfile, PMIx's hash datastore,
running as root allowed only when the job's user is root). The first node's container runs `mpirun`
with the hostfile and the rank count around the job's command; the others run `rade-rsh --hold`, which
ends once `mpirun`'s daemons there are done. The ranks of a node are in one container, so they share its
PID namespace and its /dev/shm (sized from the task's memory), as Open MPI's shared-memory transport
needs.

Nothing here starts a process: it computes the wiring (testable without root) and writes the files.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent import rsh
from jobs.errors import RadeError
from jobs.messages import Launch

HOSTFILE = f"{rsh.MOUNT_POINT}/hostfile"
RSH_AGENT = f"{rsh.MOUNT_POINT}/rade-rsh"
IMPLEMENTATIONS = ("openmpi", "mpich")
_RSH_SOURCE = Path(__file__).with_name("rsh.py")
HOSTS_FILE = "hosts"
MIN_SHM = 64 << 20


class MpiWiringError(RadeError):
    """An MPI task's wiring cannot be worked out from its order."""


@dataclass(frozen=True, slots=True)
class MpiLayout:
    """Where a job's ranks are: each node (in rank order) with its address and its number of ranks."""

    job_id: int
    attempt: int
    nodes: tuple[str, ...]
    ranks: tuple[int, ...]
    addresses: tuple[str, ...]
    implementation: str = "openmpi"

    @property
    def total(self) -> int:
        return sum(self.ranks)


def is_mpi(order: Launch) -> bool:
    return isinstance(order.spec.get("mpi"), dict)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",")] if value else []


def layout_of(order: Launch) -> MpiLayout:
    """The job's layout from its launch order: the nodes, each node's ranks (`RADE_NODE_RANKS`, or worked
    out from `mpi.ranks_per_node` when the scheduler gave none) and addresses (`RADE_NODE_ADDRESSES`)."""
    mpi = order.spec["mpi"]
    nodes = tuple(dict.fromkeys(order.nodes)) or (order.env.get("RADE_NODE", ""),)
    implementation = str(mpi.get("implementation") or "openmpi")
    if implementation not in IMPLEMENTATIONS:
        raise MpiWiringError(f"mpi.implementation {implementation!r} is not one rade wires",
                             f"use one of {', '.join(IMPLEMENTATIONS)}")
    given = _split(order.env.get("RADE_NODE_RANKS", ""))
    if given:
        ranks = tuple(int(r) for r in given)
    else:
        total = int(mpi.get("ranks") or order.ranks)
        per_node = int(mpi.get("ranks_per_node") or -(-total // len(nodes)))
        ranks = tuple(min(per_node, total - per_node * i) for i in range(len(nodes)))
    addresses = tuple(_split(order.env.get("RADE_NODE_ADDRESSES", ""))) or ("",) * len(nodes)
    if len(ranks) != len(nodes) or len(addresses) != len(nodes) or min(ranks) < 1:
        raise MpiWiringError(f"job {order.job_id}: the order's nodes ({','.join(nodes)}), ranks "
                             f"({','.join(map(str, ranks))}) and addresses do not match")
    return MpiLayout(order.job_id, order.attempt, nodes, ranks, addresses, implementation)


def hostfile_text(layout: MpiLayout) -> str:
    """The hostfile in the implementation's own format: Open MPI's `NODE slots=N`, MPICH's `NODE:N`."""
    if layout.implementation == "mpich":
        return "".join(f"{node}:{count}\n" for node, count in zip(layout.nodes, layout.ranks, strict=True))
    return "".join(f"{node} slots={count}\n" for node, count in zip(layout.nodes, layout.ranks, strict=True))


def hosts_text(layout: MpiLayout, base: str) -> str | None:
    """The containers' /etc/hosts: the node's own (`base`, what a host-network container sees) and every
    node of the job at its address; None when an address is unknown (a job within one node needs none).

    Hydra gives each proxy the hostfile's name of mpiexec's node to call back, and its ranks publish
    their node's name to each other: the names must resolve where the ranks run, and a node's own
    /etc/hosts need not list the cluster."""
    if not all(layout.addresses):
        return None
    lines = [line for line in base.splitlines()
             if not set(line.split("#", 1)[0].split()[1:]) & set(layout.nodes)]
    lines += [f"{address}\t{node}" for node, address in zip(layout.nodes, layout.addresses, strict=True)]
    return "\n".join(lines) + "\n"


def mpi_env(runs_as_root: bool) -> dict[str, str]:
    """What Open MPI and MPICH read to find the hostfile and to start daemons through `rade-rsh`."""
    env = {
        "RADE_HOSTFILE": HOSTFILE,
        "OMPI_MCA_plm_rsh_agent": RSH_AGENT,
        "OMPI_MCA_orte_default_hostfile": HOSTFILE,
        # PMIx's shared-memory datastore fails in containers; the hash store works everywhere.
        "PMIX_MCA_gds": "hash",
        "HYDRA_LAUNCHER": "ssh",
        "HYDRA_LAUNCHER_EXEC": RSH_AGENT,
        "HYDRA_HOST_FILE": HOSTFILE,
    }
    if runs_as_root:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def wrap_command(layout: MpiLayout, node: str, command: Sequence[str]) -> tuple[str, ...]:
    """The container's command: `mpirun` around the job's on the first node, the holder on the others."""
    if node != layout.nodes[0]:
        return (RSH_AGENT, "--hold")
    if layout.implementation == "mpich":
        return ("mpiexec", "-f", HOSTFILE, "-n", str(layout.total), *command)
    return ("mpirun", "--hostfile", HOSTFILE, "-np", str(layout.total), *command)


def shm_size(memory: int) -> int:
    """/dev/shm for a node's ranks: half the task's memory, at least the 64 MiB default. Open MPI's and
    MPICH's shared-memory transports keep their buffers there, and its pages count against the task's
    memory limit like any other, so the size is only a ceiling."""
    return max(MIN_SHM, memory // 2)


def job_file(layout: MpiLayout, node: str, port: int = rsh.RSH_PORT) -> dict[str, Any]:
    addresses = {n: a for n, a in zip(layout.nodes, layout.addresses, strict=True) if a}
    return {"job": layout.job_id, "attempt": layout.attempt, "node": node, "port": port,
            "addresses": addresses}


def is_root_user(user: str | None) -> bool:
    """Whether a container `user` (as Docker writes it: name or uid, maybe :group) is root; empty is root."""
    name = (user or "").partition(":")[0]
    return name in ("", "0", "root")


def files_dir(root: str | os.PathLike[str], node: str, key: tuple[int, int, int]) -> Path:
    return Path(root, "agent", node, "mpi", "{}.{}.{}".format(*key))


def write_files(directory: Path, layout: MpiLayout, node: str, secret: bytes,
                port: int = rsh.RSH_PORT, hosts: str | None = None) -> None:
    """Write the task's MPI directory whole (made beside it, then renamed into place); `hosts` is the
    text of its /etc/hosts, if it gets one."""
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    (tmp / "hostfile").write_text(hostfile_text(layout))
    if hosts is not None:
        (tmp / HOSTS_FILE).write_text(hosts)
    (tmp / rsh.JOB_FILE).write_text(json.dumps(job_file(layout, node, port)))
    fd = os.open(tmp / rsh.KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(fd, secret.hex().encode() + b"\n")
    finally:
        os.close(fd)
    shutil.copyfile(_RSH_SOURCE, tmp / "rade-rsh")
    os.chmod(tmp / "rade-rsh", 0o755)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)


def remove_files(root: str | os.PathLike[str], node: str, key: tuple[int, int, int]) -> None:
    shutil.rmtree(files_dir(root, node, key), ignore_errors=True)


def image_command(root: str, image: str) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(entrypoint, cmd, user) of an image, as its config gives them."""
    from engine.containers.lifecycle import image_config

    _, config = image_config(root, image)
    return (tuple(config.get("Entrypoint") or ()), tuple(config.get("Cmd") or ()),
            str(config.get("User") or ""))


def _target(volume: str) -> str:
    """The container path of a `SOURCE:TARGET[:ro]` volume."""
    parts = volume.split(":")
    return os.path.normpath(parts[1]) if len(parts) > 1 else ""


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return "127.0.0.1\tlocalhost\n"


def wire(root: str, node: str, order: Launch, options: Any, cluster_key: bytes,
         image: Mapping[str, Any] | None = None, etc_hosts: str = "/etc/hosts") -> Any:
    """The task's CreateOptions with its MPI wiring, its files written. `image` (entrypoint, cmd, user)
    is read from the image store when not given; `etc_hosts` is the node's own hosts file."""
    layout = layout_of(order)
    if options.network != "host" and len(layout.nodes) > 1:
        raise MpiWiringError(f"job {order.job_id}: an MPI job over several nodes needs the host network, "
                             f"not {options.network}", "remove `network:` from the job, or set it to host")
    entrypoint, cmd, image_user = image_command(root, options.image) if image is None else (
        tuple(image.get("entrypoint", ())), tuple(image.get("cmd", ())), str(image.get("user", "")))
    command = (*(entrypoint if options.entrypoint is None else options.entrypoint), *(options.command or cmd))
    if not command:
        raise MpiWiringError(f"job {order.job_id}: no command to run on the ranks",
                             "give the job a command, or use an image with one")
    directory = files_dir(root, node, (order.job_id, order.task_id, order.attempt))
    own_hosts = any(_target(v) == "/etc/hosts" for v in options.volumes)
    hosts = None if own_hosts else hosts_text(layout, _read_text(etc_hosts))
    write_files(directory, layout, node, rsh.job_secret(cluster_key, order.job_id, order.attempt), hosts=hosts)
    volumes = (*options.volumes, f"{directory}:{rsh.MOUNT_POINT}:ro")
    if hosts is not None:
        volumes += (f"{directory / HOSTS_FILE}:/etc/hosts:ro",)
    user = options.user if options.user is not None else image_user
    env = tuple(f"{k}={v}" for k, v in mpi_env(is_root_user(user)).items())
    # The job's own variables come last, so a job may override the wiring's (e.g. its own PMIx store).
    return replace(options, entrypoint=(), command=wrap_command(layout, node, command),
                   shm_size=shm_size(order.memory) if order.memory else None,
                   env=(*env, *options.env), volumes=volumes)


def task_options(root: str, node: str, order: Launch, options: Any) -> Any:
    """The CreateOptions of any task: unchanged unless the job is an MPI job, then wired."""
    if not is_mpi(order):
        return options
    from agent.rsh_server import load_cluster_key

    return wire(root, node, order, options, load_cluster_key(root))
