"""The dev cluster's scheduler and agents: their keys, their configuration files, and starting them.

The cluster authenticates as a real one does: its keys live in ROOT/cluster/keys (the scheduler's pair,
the agent key, and a key for the user who ran `up`, which the client finds there), made once and kept
across `down` and `up` so that user keys issued from them stay valid. The scheduler runs with `auth:
curve`, that user as admin, volumes allowed from /home, /scratch and /tmp, and a small share of this
machine's process table a task. Each process reads its own file in ROOT/cluster and logs beside it.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from rade.devcluster.network import enter_argv
from rade.devcluster.processes import Process, spawn
from rade.devcluster.state import ClusterState, NodeEntry, cluster_dir

if TYPE_CHECKING:
    from jobs.keyfiles import KeyDir

AGENT_PORT = 7410
CLIENT_PORT = 7411
ALLOWED_VOLUMES = ("/home", "/scratch", "/tmp")
# Every node of a dev cluster shares this machine's process table: a task's share is kept small.
PIDS_LIMIT = 512


def _user() -> str:
    from rade.client import current_user

    return current_user()


def key_dir(root: str) -> KeyDir:
    from jobs.keyfiles import KeyDir

    return KeyDir(cluster_dir(root) / "keys")


def make_keys(root: str) -> KeyDir:
    """The cluster's keys (made once; kept across `down` and `up` so issued user keys stay valid)."""
    from rade.commands.keys import init_keys, issue_user_key

    keys = key_dir(root)
    if not keys.has_scheduler_key():
        init_keys(keys)
    user = _user()
    if not keys.user_secret(user).exists():
        issue_user_key(keys, user, str(keys.user_secret(user)))
    return keys


def write_scheduler_config(state: ClusterState, keys: KeyDir, heartbeat: float) -> None:
    """ROOT/cluster/scheduler.yaml: listening on the bridge's gateway address."""
    # JSON is YAML: the file the scheduler reads, every value quoted as it must be.
    address = state.gateway_ip
    (cluster_dir(state.root) / "scheduler.yaml").write_text(json.dumps({
        "agents": f"tcp://{address}:{AGENT_PORT}", "clients": f"tcp://{address}:{CLIENT_PORT}",
        "heartbeat_interval": heartbeat, "misses": 3, "auth": "curve", "keys": str(keys.path),
        "admins": sorted({"root", _user()}), "allowed_volumes": list(ALLOWED_VOLUMES),
        "pids_limit": PIDS_LIMIT}, indent=1) + "\n")


def write_agent_config(root: str, node: str, labels: dict[str, str], keys: KeyDir) -> None:
    """ROOT/cluster/NODE.yaml: the node's labels and the cluster's keys."""
    (cluster_dir(root) / f"{node}.yaml").write_text(json.dumps({"labels": labels, "keys": str(keys.path)}))


def _rade(root: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "rade", "--root", root, *args]


def start_scheduler(state: ClusterState) -> Process:
    """Start the cluster's scheduler (again: it resumes from its state database)."""
    cdir = cluster_dir(state.root)
    argv = _rade(state.root, "scheduler", "--config", str(cdir / "scheduler.yaml"))
    return spawn(argv, cdir / "scheduler.log")


def start_agent(state: ClusterState, node: NodeEntry) -> Process:
    """Start a node's agent inside its test host (again: it adopts the containers it finds)."""
    cdir = cluster_dir(state.root)
    # Entering the namespaces happens in a small exec wrapper, not between fork and exec here: the caller
    # may have threads (ZeroMQ's), and Python code after fork is unsafe then.
    argv = _rade(state.root, "agent", "--scheduler", f"tcp://{state.gateway_ip}:{AGENT_PORT}",
                 "--name", node.name, "--config", str(cdir / f"{node.name}.yaml"))
    return spawn(enter_argv(state, node) + argv, cdir / f"{node.name}.log")
