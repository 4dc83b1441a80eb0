"""Real daemons for the integration tests: the scheduler and simulated agents as subprocesses on 127.0.0.1,
started through the `rade` command, each killed by its PID when the test ends."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from rade.client import SchedulerClient

TOP = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[str, dict[tuple, float]]:
    """A metrics endpoint on this machine, read with prometheus_client's own parser: name -> {sorted label
    items: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def wait_until(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Poll a condition until it holds or the deadline passes (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Daemons:
    """A scheduler and its simulated agents, all killed at `close()`."""

    def __init__(self, root: Path, interval: float = 0.3, misses: int = 4) -> None:
        self.root = root
        self.agents_port, self.clients_port = free_port(), free_port()
        self.config = root / "scheduler.yaml"
        self.config.write_text(f"agents: tcp://127.0.0.1:{self.agents_port}\n"
                               f"clients: tcp://127.0.0.1:{self.clients_port}\n"
                               f"heartbeat_interval: {interval}\nmisses: {misses}\nauth: none\n")
        self.procs: list[subprocess.Popen] = []
        self.scheduler: subprocess.Popen | None = None
        self.logs: dict[str, Path] = {}
        self.client = SchedulerClient(f"tcp://127.0.0.1:{self.clients_port}", timeout=20)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = self.root / f"{name}.log"
        self.logs[name] = log
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "rade", "--root", str(self.root), *args],
                                    stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=TOP, close_fds=True)
        self.procs.append(proc)
        return proc

    def start_scheduler(self) -> subprocess.Popen:
        proc = self._spawn("scheduler", "scheduler", "--config", str(self.config))
        self.scheduler = proc
        endpoints = self.root / "scheduler" / "endpoints.json"

        def ready() -> bool:
            try:
                return json.loads(endpoints.read_text())["pid"] == proc.pid
            except (OSError, ValueError, KeyError):
                return False
        wait_until(lambda: ready() or proc.poll() is not None, what="the scheduler to listen")
        assert proc.poll() is None, self.logs["scheduler"].read_text()
        return proc

    def start_agents(self, prefix: str, count: int, cpus: int = 2, memory: str = "4G") -> subprocess.Popen:
        proc = self._spawn(f"agents-{prefix}", "agent", "--simulate", "--scheduler",
                           f"tcp://127.0.0.1:{self.agents_port}", "--cpus", str(cpus), "--memory", memory,
                           "--count", str(count), "--prefix", prefix)
        names = {f"{prefix}{i:03d}" for i in range(1, count + 1)}
        wait_until(lambda: names <= {n["name"] for n in self.client.nodes() if n["state"] != "UNKNOWN"
                                     and n["state"] != "DOWN"}, what=f"nodes {sorted(names)} to register")
        return proc

    def rade(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rade", "--root", str(self.root), *args,],
                              capture_output=True, text=True, timeout=timeout, cwd=TOP, check=False,
                              env={**os.environ, "RADE_SCHEDULER": f"tcp://127.0.0.1:{self.clients_port}"})

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(timeout=20)

    def close(self) -> None:
        self.client.close()
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
