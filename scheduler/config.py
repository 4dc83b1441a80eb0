"""The scheduler's configuration: a small YAML file, every key optional.

    agents: tcp://0.0.0.0:7410        # where agents connect (ROUTER)
    clients: tcp://127.0.0.1:7411     # where `rade submit`, `rade queue`... connect (ROUTER)
    heartbeat_interval: 2s            # how often agents heartbeat
    misses: 3                         # missed heartbeats before a node is DOWN
    state: /var/lib/rade/scheduler/state.db
    synchronous: normal               # normal: a commit survives any crash of the scheduler process
                                      # (SIGKILL included), not a power cut; full: fsync every commit
    auth: curve                       # curve: every agent and user proves its key (see scheduler.auth);
                                      # none: anyone who reaches the sockets is believed (a test network)
    keys: /var/lib/rade/keys          # the key directory `rade keys init` made
    admins: [root]                    # users who see and cancel every job, drain and resume nodes
    users: {alice: "1001:1001"}       # uid:gid jobs run as; users not here come from the system passwd
    allowed_volumes: [/home, /scratch]  # host paths job volumes may come from (and below them)
    pids_limit: 4096                  # processes (and threads) per task: a fork bomb stops there
    backfill_depth, topology, priority_weights, fairshare_half_life, priority_max_age, metrics_port:
                                      # the scheduling policy (see scheduler.policy)

A port of `*` lets the system choose (tests); the daemon writes the addresses it got (and its public
key) to `<root>/scheduler/endpoints.json`, which local clients and agents read when given no address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from jobs.errors import RadeError
from jobs.units import parse_duration
from scheduler.policy import POLICY_KEYS, PolicyConfig, policy_settings

AGENT_PORT = 7410
CLIENT_PORT = 7411
_KEYS = {"agents", "clients", "heartbeat_interval", "misses", "state", "synchronous", "auth", "keys", "admins",
         "users", "allowed_volumes", "pids_limit"} | POLICY_KEYS
DEFAULT_ALLOWED_VOLUMES = ("/home", "/scratch")
DEFAULT_PIDS_LIMIT = 4096


class ConfigError(RadeError):
    """The scheduler's configuration file is unreadable or wrong."""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    agents: str
    clients: str
    state: str
    heartbeat_interval: float = 2.0
    misses: int = 3
    synchronous: str = "normal"
    root: str = ""
    auth: str = "none"
    keys: str = ""
    admins: tuple[str, ...] = ("root",)
    users: tuple[tuple[str, int, int], ...] = ()  # (name, uid, gid)
    allowed_volumes: tuple[str, ...] = DEFAULT_ALLOWED_VOLUMES
    pids_limit: int = DEFAULT_PIDS_LIMIT
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    @property
    def endpoints_file(self) -> str:
        return os.path.join(self.root, "scheduler", "endpoints.json")


def load_config(path: str | None, root: str) -> SchedulerConfig:
    """The configuration in `path` (None: all defaults), with paths defaulting under `root`."""
    data: dict = {}
    if path is not None:
        import yaml

        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
        except OSError as err:
            raise ConfigError(f"{path}: cannot be read: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not YAML: {err}".splitlines()[0], "check the file's indentation") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the configuration is a map of keys, e.g. 'misses: 3'")
        unknown = sorted(set(map(str, data)) - _KEYS)
        if unknown:
            raise ConfigError(f"{path}: unknown key {unknown[0]!r}", f"known keys: {', '.join(sorted(_KEYS))}")
    try:
        interval = float(parse_duration(data["heartbeat_interval"])) if "heartbeat_interval" in data else 2.0
        if isinstance(data.get("heartbeat_interval"), int | float):
            interval = float(data["heartbeat_interval"])  # a bare number here is seconds
    except RadeError as err:
        raise ConfigError(f"{path}: heartbeat_interval: {err}") from None
    misses = data.get("misses", 3)
    if not isinstance(misses, int) or isinstance(misses, bool) or misses < 1:
        raise ConfigError(f"{path}: misses: {misses!r} is not a count of at least 1")
    synchronous = str(data.get("synchronous", "normal")).lower()
    if synchronous not in ("full", "normal"):
        raise ConfigError(f"{path}: synchronous: {synchronous!r} is neither full nor normal")
    from scheduler.access import access_settings

    return SchedulerConfig(
        agents=endpoint(str(data.get("agents", f"tcp://127.0.0.1:{AGENT_PORT}")), AGENT_PORT),
        clients=endpoint(str(data.get("clients", f"tcp://127.0.0.1:{CLIENT_PORT}")), CLIENT_PORT),
        state=str(data.get("state", os.path.join(root, "scheduler", "state.db"))),
        heartbeat_interval=interval, misses=misses, synchronous=synchronous, root=root,
        policy=policy_settings(data, str(path)), **access_settings(data, str(path), root))


def endpoint(address: str, default_port: int) -> str:
    """A ZeroMQ endpoint from `host`, `host:port` or a full `tcp://`/`ipc://` endpoint."""
    if "://" in address:
        return address
    host, _, port = address.rpartition(":") if ":" in address else (address, "", str(default_port))
    return f"tcp://{host}:{port}"
