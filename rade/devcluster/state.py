"""The dev cluster's record of itself: ROOT/cluster/cluster.json, what `up` made, saved as it is made.

`down` and `restart` act on this record alone, so it must describe even a half-finished `up`: each change
is saved at once (a temporary file renamed over the old one) while ROOT/cluster/lock is held, and the file
carries a format version so that another rade's record is refused rather than misread. This module only
reads and writes the record; making or removing what it names is for the modules beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jobs.errors import RadeError
from rade.devcluster.processes import Process

STATE_VERSION = 1


class ClusterError(RadeError):
    """The dev cluster cannot be made, found or taken down."""


class ClusterAlreadyUp(ClusterError):
    """`up` on a root whose cluster is up: nothing was made."""


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


@contextlib.contextmanager
def locked(root: str) -> Iterator[None]:
    """Hold the root's cluster lock: one `up`, `down` or `restart` at a time acts on a record."""
    from engine.filelock import file_lock

    cluster_dir(root).mkdir(parents=True, exist_ok=True)
    with file_lock(str(cluster_dir(root) / "lock")):
        yield


def load_state(root: str) -> ClusterState | None:
    """The record of the cluster on `root`; None when none is up."""
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


def save_state(state: ClusterState) -> None:
    """Replace the record with `state` in one step (the caller holds `locked`)."""
    path = state_path(state.root)
    tmp = path.with_name(".cluster.json.tmp")
    tmp.write_text(json.dumps({"version": STATE_VERSION, **asdict(state)}, indent=1))
    os.replace(tmp, path)
