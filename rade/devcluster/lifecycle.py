"""`up`, `down`, `restart` and `status` of a dev cluster: the order in which its parts are made and undone.

`up` saves each thing to the record (`state`) as soon as it exists, so `down` undoes exactly what was made
even after a half-finished `up`: it stops every process it started (by PID checked against its start
time), the containers left on the nodes and whatever else still lives in a node's namespace, then removes
the namespaces, links and the bridge. Both hold the root's lock, so they never interleave.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

from rade.devcluster.daemons import (
    CLIENT_PORT,
    make_keys,
    start_agent,
    start_scheduler,
    write_agent_config,
    write_scheduler_config,
)
from rade.devcluster.network import add_test_host, claim_slot, remove_network
from rade.devcluster.processes import is_alive, kill_processes_in, netns_inode, stop_process
from rade.devcluster.state import (
    ClusterAlreadyUp,
    ClusterError,
    ClusterState,
    cluster_dir,
    load_state,
    locked,
    save_state,
    state_path,
)

MAX_NODES = 200


def up(root: str, nodes: int, labels: dict[str, dict[str, str]] | None = None, heartbeat: float = 2.0,
       timeout: float = 30.0) -> ClusterState:
    """Make the cluster and wait until every node has registered; ClusterError if one is already up."""
    if not 1 <= nodes <= MAX_NODES:
        raise ClusterError(f"--nodes {nodes}: a dev cluster has 1 to {MAX_NODES} nodes")
    root = os.path.abspath(root)
    with locked(root):
        if load_state(root) is not None:
            raise ClusterAlreadyUp(f"a dev cluster is already up on {root}",
                                   "see 'rade cluster status'; 'rade cluster down' removes it")
        state = ClusterState(root=root)
        save_state(state)
        bridge = claim_slot(state)
        keys = make_keys(root)
        write_scheduler_config(state, keys, heartbeat)
        state.scheduler = start_scheduler(state)
        save_state(state)
        for index in range(1, nodes + 1):
            entry = add_test_host(state, bridge, index)
            state.nodes.append(entry)
            save_state(state)
            write_agent_config(root, entry.name, (labels or {}).get(entry.name, {}), keys)
            state.nodes[-1] = replace(entry, agent=start_agent(state, entry))
            save_state(state)
    wait_for_nodes(root, state, timeout)
    return state


def restart(root: str, scheduler: bool = False, nodes: tuple[str, ...] = ()) -> ClusterState:
    """Start again the scheduler and/or the named nodes' agents when they are not running."""
    root = os.path.abspath(root)
    with locked(root):
        state = load_state(root)
        if state is None:
            raise ClusterError(f"no dev cluster is up on {root}", "start one with 'rade cluster up'")
        if scheduler and not is_alive(state.scheduler):
            state.scheduler = start_scheduler(state)
        for i, node in enumerate(state.nodes):
            if node.name in nodes and not is_alive(node.agent):
                state.nodes[i] = replace(node, agent=start_agent(state, node))
        save_state(state)
        return state


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

    root = os.path.abspath(root)
    done: list[str] = []
    with locked(root):
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
        done += remove_network(state)
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
