"""The agent's configuration: a small YAML file, every key optional; command-line flags win over it.

    scheduler: tcp://10.0.0.1:7410   # the scheduler's agent address
    name: node17                     # the node's name (default: the first label of the hostname)
    labels: {rack: r3, ib: "true"}   # matched by jobs' placement.constraints
    kill_grace: 10s                  # SIGTERM to SIGKILL when a task outlives its time limit
    keys: /var/lib/rade/keys         # where agent.key_secret is (default ROOT/keys); none there: no CURVE
    metrics_port: 9411               # Prometheus endpoint (running tasks, CPU and memory by task); off if unset
    metrics_address: 127.0.0.1       # where that endpoint listens
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.errors import RadeError
from jobs.units import parse_duration

_KEYS = {"scheduler", "name", "labels", "kill_grace", "keys", "metrics_port", "metrics_address"}
DEFAULT_KILL_GRACE = 10.0


class AgentConfigError(RadeError):
    """The agent's configuration file is unreadable or wrong."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    scheduler: str | None = None
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    kill_grace: float = DEFAULT_KILL_GRACE
    keys: str | None = None
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"


def load_agent_config(path: str | None) -> AgentConfig:
    """The configuration in `path` (None: the defaults)."""
    if path is None:
        return AgentConfig()
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except OSError as err:
        raise AgentConfigError(f"{path}: cannot be read: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise AgentConfigError(f"{path}: not YAML: {str(err).splitlines()[0]}",
                               "check the file's indentation") from None
    if not isinstance(data, dict):
        raise AgentConfigError(f"{path}: the configuration is a map of keys, e.g. 'name: node1'")
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise AgentConfigError(f"{path}: unknown key {unknown[0]!r}", f"known keys: {', '.join(sorted(_KEYS))}")
    labels = data.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) for k in labels):
        raise AgentConfigError(f"{path}: labels: write a map of names to values, e.g. {{rack: r3}}")
    try:
        grace = float(parse_duration(data["kill_grace"])) if "kill_grace" in data else DEFAULT_KILL_GRACE
    except RadeError as err:
        raise AgentConfigError(f"{path}: kill_grace: {err.message}", err.hint) from None
    name = data.get("name")
    scheduler = data.get("scheduler")
    port = data.get("metrics_port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536):
        raise AgentConfigError(f"{path}: metrics_port: {port!r} is not a TCP port")
    return AgentConfig(scheduler=None if scheduler is None else str(scheduler), name=None if name is None else str(name),
                       labels={k: str(v) for k, v in labels.items()}, kill_grace=grace,
                       keys=None if data.get("keys") is None else str(data["keys"]), metrics_port=port,
                       metrics_address=str(data.get("metrics_address") or "127.0.0.1"))
