"""What an authenticated user may do, and what a job may ask for: the scheduler's authorization rules.

The user is the one the ZAP handler found for the connection's key (`scheduler.auth`), never what a
request claims. Users see the details of and cancel only their own jobs; admins (the configuration's
`admins`) every job, and only they drain and resume nodes. A job runs as its owner's uid and gid, from
the configuration's `users` map or the system's passwd; a user with neither cannot submit. A job's
volumes must come from under the site's `allowed_volumes` and never from the scheduler's own state (its
database, its keys, the state root), which a user could otherwise mount and rewrite.

Pure rules over the configuration: the daemon asks, these answer or raise `NotAllowed`.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable, Mapping
from typing import Any

from jobs.errors import RadeError

AUTH_MODES = ("curve", "none")


class NotAllowed(RadeError):
    """The request is refused for this user."""


def access_settings(data: Mapping[str, Any], where: str, root: str) -> dict[str, Any]:
    """The access keys of a scheduler configuration, checked; ConfigError naming the key otherwise."""
    from jobs.keyfiles import KeyDir, default_key_dir
    from scheduler.config import DEFAULT_ALLOWED_VOLUMES, DEFAULT_PIDS_LIMIT, ConfigError

    auth = str(data.get("auth", "curve")).lower()
    if auth not in AUTH_MODES:
        raise ConfigError(f"{where}: auth: {auth!r} is neither curve nor none")
    keys = str(data.get("keys") or default_key_dir(root))
    if auth == "curve" and not KeyDir(_path(keys)).has_scheduler_key():
        raise ConfigError(f"{where}: auth: curve, but {keys} holds no scheduler key",
                          "make the keys with 'rade keys init', or set 'auth: none' on a trusted test network")
    admins = data.get("admins", ["root"])
    if not isinstance(admins, list) or not all(isinstance(a, str) and a for a in admins):
        raise ConfigError(f"{where}: admins: write a list of user names, e.g. [root, alice]")
    users = []
    given = data.get("users") or {}
    if not isinstance(given, dict):
        raise ConfigError(f"{where}: users: write a map of user names to uid:gid, e.g. {{alice: \"1001:1001\"}}")
    for name, ids in given.items():
        uid, sep, gid = str(ids).partition(":")
        if not uid.isdigit() or (sep and not gid.isdigit()):
            raise ConfigError(f"{where}: users.{name}: {ids!r} is not uid:gid, e.g. \"1001:1001\"")
        users.append((str(name), int(uid), int(gid) if sep else int(uid)))
    allowed = data.get("allowed_volumes", list(DEFAULT_ALLOWED_VOLUMES))
    if not isinstance(allowed, list) or not all(isinstance(p, str) and p.startswith("/") for p in allowed):
        raise ConfigError(f"{where}: allowed_volumes: write a list of absolute paths, e.g. [/home, /scratch]")
    pids = data.get("pids_limit", DEFAULT_PIDS_LIMIT)
    if not isinstance(pids, int) or isinstance(pids, bool) or pids < 1:
        raise ConfigError(f"{where}: pids_limit: {pids!r} is not a count of at least 1")
    return {"auth": auth, "keys": keys, "admins": tuple(admins), "users": tuple(users),
            "allowed_volumes": tuple(os.path.normpath(p) for p in allowed), "pids_limit": pids}


def _path(text: str):
    from pathlib import Path

    return Path(text)


def is_under(path: str, prefix: str) -> bool:
    path, prefix = os.path.normpath(path), os.path.normpath(prefix)
    return prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/")


class Access:
    """The rules, for one configuration."""

    def __init__(self, admins: Iterable[str], users: Iterable[tuple[str, int, int]], allowed_volumes: Iterable[str],
                 protected: Iterable[str]) -> None:
        self.admins = frozenset(admins)
        self.users = {name: (uid, gid) for name, uid, gid in users}
        self.allowed_volumes = tuple(allowed_volumes)
        self.protected = tuple(os.path.realpath(p) for p in protected if p)

    def is_admin(self, user: str) -> bool:
        return user in self.admins

    def require_admin(self, user: str, what: str) -> None:
        if not self.is_admin(user):
            raise NotAllowed(f"{user} may not {what}: only admins may",
                             "admins are listed under 'admins' in the scheduler's configuration")

    def require_owner(self, user: str, owner: str, job_id: int) -> None:
        if user != owner and not self.is_admin(user):
            raise NotAllowed(f"job {job_id} belongs to {owner}, not {user}", "you may see and cancel only your own jobs")

    def ids(self, user: str) -> tuple[int, int]:
        """The uid and gid `user`'s jobs run as."""
        if user in self.users:
            return self.users[user]
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise NotAllowed(f"user {user!r} has no uid on this cluster",
                             "add it to 'users' in the scheduler's configuration, or to the system's passwd") from None
        return entry.pw_uid, entry.pw_gid

    def check_volumes(self, spec: Mapping[str, Any]) -> None:
        """Refuse a spec whose volumes come from outside the allowed prefixes or reach the state."""
        allowed = ", ".join(self.allowed_volumes) or "none"
        volumes = spec.get("volumes") or ()
        if not isinstance(volumes, list | tuple):
            return  # not a list of volumes at all: the spec's own check refuses it, saying so
        for volume in volumes:
            # The plain form a client sends ({source, target, read_only}), or the YAML's SRC:DST[:ro].
            source = str(volume.get("source", "")) if isinstance(volume, Mapping) else str(volume).split(":")[0]
            if not source.startswith("/"):
                raise NotAllowed(f"volume {source!r}: not an absolute host path")
            real = os.path.realpath(source)
            if not any(is_under(source, p) and is_under(real, p) for p in self.allowed_volumes):
                raise NotAllowed(f"volume {source}: not under a path this cluster allows ({allowed})",
                                 "put the data under one of them, or ask an admin to add the path to allowed_volumes")
            for state in self.protected:
                if is_under(real, state) or is_under(state, real):
                    raise NotAllowed(f"volume {source}: holds rade's own state ({state})",
                                     "mount a directory of your own data instead")
