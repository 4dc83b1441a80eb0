"""`rade agent`: one node's daemon. One thread owns every socket and descriptor in one `zmq.Poller`: the
link's DEALER socket to the scheduler, the engine's start pipes and control connections of running
containers (readable when a container started or ended), and a wake-up pipe for signals. Timers (the
link's heartbeats, tasks' time limits and kill grace periods) set the poller's timeout; nothing polls.

Stopping the agent (SIGTERM, SIGINT) leaves the containers running under their supervisors: the next
agent of the node adopts them from the task files and reports them, so an agent upgrade or crash costs
no work.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import zmq

from agent.config import AgentConfig
from agent.launcher import Launcher
from agent.link import AgentLink
from agent.metrics import AgentMetrics, task_usage
from agent.node import NodeInfo
from agent.orphans import SWEEP_EVERY, sweep
from agent.rsh_server import start_rsh_server
from agent.state import AgentState
from agent.tasks import EngineRunner

log = logging.getLogger(__name__)

# How often the metrics endpoint's task usage is read from the tasks' cgroups.
METRICS_EVERY = 5.0


class MonotonicClock:
    def monotonic(self) -> float:
        return time.monotonic()


def local_address(endpoint: str) -> str:
    """The address this node reaches the scheduler from ("" when it cannot be told, e.g. ipc://)."""
    parts = urlsplit(endpoint)
    if parts.scheme != "tcp" or not parts.hostname or parts.hostname == "*":
        return ""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((parts.hostname, parts.port or 9))  # no packet is sent: only a route is chosen
            return probe.getsockname()[0]
    except OSError:
        return ""


class AgentDaemon:
    """The agent: build it, call `serve()`; `stop()` from a signal handler or another thread."""

    def __init__(self, endpoint: str, root: str, node: NodeInfo, config: AgentConfig,
                 clock: MonotonicClock | None = None, launcher: Launcher | None = None) -> None:
        self.node = node
        self.clock = clock or MonotonicClock()
        self.state = AgentState(root, node.name)
        self.state.lock()
        self.context = zmq.Context()
        self.poller = zmq.Poller()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = False
        address = local_address(endpoint)
        self.launcher = launcher
        self.runner = EngineRunner(root, node.name, self.state, self, self.clock, config.kill_grace, launcher)
        self.link = AgentLink(self.context, endpoint, lambda: node.register(address), self.runner, self.clock,
                              curve=agent_keys(config.keys or os.path.join(root, "keys")))
        self.runner.link = self.link
        self._metrics_at = (config.metrics_address, config.metrics_port) if config.metrics_port is not None else None
        self.metrics: AgentMetrics | None = None

    # -- the Watcher the runner uses ------------------------------------------------------------------------

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        self._callbacks[fd] = callback
        self.poller.register(fd, zmq.POLLIN)

    def unwatch(self, fd: int) -> None:
        if self._callbacks.pop(fd, None) is not None:
            self.poller.unregister(fd)

    # -- running --------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Safe from a signal handler: the loop wakes and returns."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def serve(self) -> None:
        log.info("node %s: %d cpus (%d NUMA nodes), %d bytes, %d gpus, labels %s; scheduler %s", self.node.name,
                 len(self.node.cpu_ids), len(self.node.numa_nodes), self.node.memory, self.node.gpus,
                 self.node.labels, self.link.endpoint)
        self.poller.register(self._wake_r, zmq.POLLIN)
        self.link.start()
        adopted = self.runner.adopt()
        if adopted:
            log.info("node %s: adopted %d tasks left by the previous agent", self.node.name, adopted)
        sock, generation = self.link.socket, self.link.generation
        self.poller.register(sock, zmq.POLLIN)
        next_metrics = float("inf")
        if self._metrics_at is not None:
            # Its HTTP thread starts here, after the launcher's fork, like ZeroMQ's threads.
            self.metrics = AgentMetrics(self.node.name)
            self.metrics.serve(self._metrics_at[1], self._metrics_at[0])
            next_metrics = self.clock.monotonic()
        next_sweep = self.clock.monotonic() + SWEEP_EVERY
        try:
            while not self._stopping:
                due = min(self.link.next_due(), self.runner.next_due(), next_metrics, next_sweep)
                timeout = max(0.0, due - self.clock.monotonic())
                for item, _ in self.poller.poll(timeout * 1000):
                    if item is sock:
                        self._guarded(self.link.on_readable)
                    elif item == self._wake_r:
                        self._drain_wake()
                    else:
                        callback = self._callbacks.get(item)
                        if callback is not None:
                            self._guarded(callback)
                now = self.clock.monotonic()
                if now >= self.link.next_due():
                    self.link.on_timer()
                if now >= self.runner.next_due():
                    self._guarded(self.runner.on_timer)
                if self.metrics is not None and now >= next_metrics:
                    self.metrics.update(task_usage((key, task.slice) for key, task in self.runner.tasks.items()))
                    next_metrics = now + METRICS_EVERY
                if now >= next_sweep:
                    self._guarded(self._sweep)
                    next_sweep = now + SWEEP_EVERY
                if self.link.generation != generation:
                    self.poller.unregister(sock)
                    sock, generation = self.link.socket, self.link.generation
                    self.poller.register(sock, zmq.POLLIN)
        finally:
            if self.metrics is not None:
                self.metrics.close()
            self.runner.close()
            self.link.close()
            self.context.term()
            if self.launcher is not None:
                self.launcher.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self.state.unlock()
            log.info("node %s: agent stopped (%d tasks left running for the next agent)", self.node.name,
                     len(self.runner.tasks))

    def _sweep(self) -> None:
        owned = [task.file.container_id for task in self.runner.tasks.values()]
        sweep(self.runner.store, self.runner.root, self.node.name, owned)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 64):
                pass
        except BlockingIOError:
            pass

    @staticmethod
    def _guarded(callback: Callable[[], None]) -> None:
        # One task's surprise must not take the node down with every other task on it.
        try:
            callback()
        except Exception:  # logged with its traceback; the daemon keeps serving
            log.exception("error while handling a task event")


AGENT_PORT = 7410


def agent_keys(directory: str):
    """The agent's CURVE keys from a key directory; None (no CURVE, logged) when it holds no agent key."""
    from pathlib import Path

    from agent.link import CurveKeys
    from jobs.keyfiles import KeyDir, read_key_file

    keys = KeyDir(Path(directory))
    if not keys.agent_secret.exists():
        log.warning("no agent key in %s: connecting without CURVE (a CURVE scheduler refuses this agent)", directory)
        return None
    pair = read_key_file(keys.agent_secret, secret=True)
    server = pair.metadata.get("scheduler-key") or read_key_file(keys.scheduler_public).public
    assert pair.secret is not None
    return CurveKeys(pair.public, pair.secret, server)


def scheduler_endpoint(explicit: str | None, root: str) -> str:
    """The scheduler's agent endpoint: the flag or config value (`host`, `host:port` or an endpoint), else
    the endpoints file a scheduler (or the local dev cluster) wrote under `root`, else this machine's."""
    if explicit:
        if "://" in explicit:
            return explicit
        host, _, port = explicit.rpartition(":") if ":" in explicit else (explicit, "", str(AGENT_PORT))
        return f"tcp://{host}:{port}"
    import json

    try:
        with open(os.path.join(root, "scheduler", "endpoints.json"), encoding="utf-8") as handle:
            return str(json.load(handle)["agents"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"tcp://127.0.0.1:{AGENT_PORT}"


def run_agent(scheduler: str | None, name: str | None, config_path: str | None, root: str) -> int:
    """`rade agent`: discover the node, then serve until SIGTERM or SIGINT."""
    from agent.config import load_agent_config
    from agent.node import discover

    config = load_agent_config(config_path)
    node = discover(name or config.name, config.labels)
    # Both fork before the daemon's ZeroMQ context starts its threads; the rsh server first, so it holds
    # no copy of the launcher's socket (whose closing is what ends the launcher).
    rsh = start_rsh_server(root, node.name)
    launcher = Launcher(root)
    launcher.start()
    try:
        daemon = AgentDaemon(scheduler_endpoint(scheduler or config.scheduler, root), root, node, config,
                             launcher=launcher)
        daemon.install_signal_handlers()
        daemon.serve()
    finally:
        if rsh is not None:
            rsh.close()
    return 0
