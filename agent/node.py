"""What this node is: its CPUs and their NUMA layout, memory, GPUs, architecture, hostname and labels,
read from the kernel (/sys, /proc, /dev) and the agent's configuration, as the `Register` message says it.

Only reading: nothing here writes or keeps state. The paths are parameters so a test can point them at
a tree shaped like the kernel's.
"""

from __future__ import annotations

import os
import platform
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from jobs.messages import Register
from jobs.units import parse_cpu_list

AGENT_VERSION = "1"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node as discovered: `numa_nodes` holds the CPU ids of each NUMA node, in node order."""

    name: str
    cpu_ids: tuple[int, ...]
    numa_nodes: tuple[tuple[int, ...], ...]
    memory: int
    gpus: int
    arch: str
    hostname: str
    labels: dict[str, str] = field(default_factory=dict)

    def register(self, address: str = "") -> Register:
        return Register(node=self.name, cpus=len(self.cpu_ids), memory=self.memory, gpus=self.gpus,
                        arch=self.arch, labels=dict(self.labels), cpu_ids=self.cpu_ids,
                        numa_nodes=self.numa_nodes, address=address, agent_version=AGENT_VERSION)


def usable_cpus(sys_root: str = "/sys") -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity), else the kernel's online list."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except OSError:
        return parse_cpu_list(Path(sys_root, "devices/system/cpu/online").read_text())


def numa_layout(cpus: tuple[int, ...], sys_root: str = "/sys") -> tuple[tuple[int, ...], ...]:
    """The usable CPUs of each NUMA node (nodes without any left out); one node holding all of them on a
    kernel without NUMA information."""
    base = Path(sys_root, "devices/system/node")
    usable = set(cpus)
    nodes = []
    try:
        entries = sorted((int(m.group(1)), e) for e in os.scandir(base) if (m := re.fullmatch(r"node(\d+)", e.name)))
    except FileNotFoundError:
        entries = []
    for _, entry in entries:
        try:
            members = tuple(c for c in parse_cpu_list(Path(entry.path, "cpulist").read_text() or "") if c in usable)
        except (OSError, ValueError):
            continue
        if members:
            nodes.append(members)
    return tuple(nodes) if nodes else (cpus,)


def total_memory(proc_root: str = "/proc") -> int:
    """MemTotal in bytes."""
    with open(f"{proc_root}/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{proc_root}/meminfo has no MemTotal line")


def gpu_count(dev_root: str = "/dev") -> int:
    """NVIDIA GPUs: the /dev/nvidiaN device nodes (nvidiactl and nvidia-uvm are not GPUs)."""
    try:
        return sum(1 for name in os.listdir(dev_root) if re.fullmatch(r"nvidia\d+", name))
    except FileNotFoundError:
        return 0


def discover(name: str | None, labels: dict[str, str], sys_root: str = "/sys", proc_root: str = "/proc",
             dev_root: str = "/dev") -> NodeInfo:
    """This node: named `name`, or by its hostname's first label when None."""
    hostname = socket.gethostname()
    cpus = usable_cpus(sys_root)
    arch = platform.machine()
    gpus = gpu_count(dev_root)
    # Every node says its arch (and GPUs), so `constraints: {arch: x86_64}` works without configuration.
    merged = {"arch": arch, **({"gpu": "true"} if gpus else {}), **labels}
    return NodeInfo(name=name or hostname.split(".")[0], cpu_ids=cpus, numa_nodes=numa_layout(cpus, sys_root),
                    memory=total_memory(proc_root), gpus=gpus, arch=arch, hostname=hostname, labels=merged)
