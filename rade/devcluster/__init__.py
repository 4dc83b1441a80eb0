"""The local dev cluster: a scheduler and N node agents on this machine, each agent a "host" of its own.

`up` makes a bridge (`rade-cl0`, 198.18.0.1/24, no route out), starts the scheduler listening on it, and
for each node a test host (its own network namespace, hostname `nodeI`) running `rade agent` in that
namespace and a new UTS namespace; when that bridge is another root's, the next free slot is used.
Every process shares one state root, so the image store, the containers' logs and the scheduler's
endpoints file are the same for all: a client given the same root (or none: the default) finds the
cluster without flags. `down` undoes exactly what `up` made, even after a half-finished `up`.

The parts, one module each:
  state       ROOT/cluster/cluster.json, the record of what was made, and its lock
  processes   starting processes detached, knowing them again by start time, stopping them
  network     the slot, the bridge and the nodes' test hosts; `python -m rade.devcluster enter`
  daemons     the keys, the scheduler's and agents' configuration files, starting them
  lifecycle   up, down, restart, status
"""

from __future__ import annotations

from rade.devcluster.daemons import (
    AGENT_PORT,
    ALLOWED_VOLUMES,
    CLIENT_PORT,
    PIDS_LIMIT,
    key_dir,
    make_keys,
    start_agent,
    start_scheduler,
)
from rade.devcluster.lifecycle import MAX_NODES, down, restart, status, up, wait_for_nodes
from rade.devcluster.network import MAX_SLOTS, SLOTS_LOCK, bridge_name, gateway, host_of, main, netns_name
from rade.devcluster.processes import (
    Process,
    is_alive,
    kill_processes_in,
    netns_inode,
    processes_in,
    start_time,
    stop_process,
)
from rade.devcluster.state import (
    STATE_VERSION,
    ClusterAlreadyUp,
    ClusterError,
    ClusterState,
    NodeEntry,
    cluster_dir,
    load_state,
    state_path,
)

__all__ = [
    "AGENT_PORT", "ALLOWED_VOLUMES", "CLIENT_PORT", "MAX_NODES", "MAX_SLOTS", "PIDS_LIMIT", "SLOTS_LOCK",
    "STATE_VERSION", "ClusterAlreadyUp", "ClusterError", "ClusterState", "NodeEntry", "Process",
    "bridge_name", "cluster_dir", "down", "gateway", "host_of", "is_alive", "key_dir", "kill_processes_in",
    "load_state", "main", "make_keys", "netns_inode", "netns_name", "processes_in", "restart",
    "start_agent", "start_scheduler", "start_time", "state_path", "status", "stop_process", "up",
    "wait_for_nodes",
]
