"""Who may connect: the scheduler's ZAP handler, as a sans-I/O core over the cluster's key directory.

ZeroMQ asks a ZAP handler (RFC 27) about every CURVE handshake on a socket that has a ZAP domain. The
daemon binds the handler's REP socket in its own context and polls it in its one loop, next to the agent
and client sockets, so every socket stays owned by one thread and the known keys need no lock; this
module only turns a request's frames into a reply's. The agent socket's domain (`agents`) accepts the
keys in `agents/` and the agent key; the client socket's (`clients`) the keys in `users/`, and the
reply's User-Id is the user the key was issued to, which the daemon reads from each message
(`zmq.Frame.get("User-Id")`) as the only truth about who asks.

A key not known is refused (status 400) and logged, at most once a minute per key, so a client that
keeps retrying cannot flood the log; the directory is read again (when it changed) before a refusal,
so `rade keys user NAME` takes effect without a restart. A malformed request gets a 500, never an
exception out of the loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jobs.keyfiles import KeyDir, KeyFileError, read_key_file

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"
AGENTS_DOMAIN = "agents"
CLIENTS_DOMAIN = "clients"
AGENT_USER = "rade-agent"
LOG_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    user: str = ""
    reason: str = ""


class Gatekeeper:
    """The known keys of a key directory, and the ZAP answers they give."""

    def __init__(self, keys: KeyDir, monotonic: Callable[[], float]) -> None:
        self.keys = keys
        self.monotonic = monotonic
        self.agents: dict[bytes, str] = {}
        self.users: dict[bytes, str] = {}
        self._stamp: tuple[int, ...] = ()
        self._logged: dict[tuple[str, bytes], float] = {}
        self.refused = 0
        self.reload()

    # -- the known keys -------------------------------------------------------------------------------------

    def _dir_stamp(self) -> tuple[int, ...]:
        stamp = []
        for path in (self.keys.agents, self.keys.users, self.keys.agent_secret):
            try:
                stamp.append(os.stat(path).st_mtime_ns)
            except OSError:
                stamp.append(0)
        return tuple(stamp)

    def reload(self) -> None:
        """Read the agent and user keys again (a bad file is logged and skipped)."""
        from zmq.utils import z85

        self._stamp = self._dir_stamp()
        agents: dict[bytes, str] = {}
        users: dict[bytes, str] = {}
        try:
            agent = read_key_file(self.keys.agent_secret, secret=True)
            agents[z85.decode(agent.public)] = AGENT_USER
        except KeyFileError:
            pass  # agents' public keys may all be in agents/
        for path in _key_files(self.keys.agents):
            try:
                agents[z85.decode(read_key_file(path).public)] = AGENT_USER
            except KeyFileError as err:
                log.warning("agent key skipped: %s", err)
        for path in _key_files(self.keys.users):
            try:
                key = read_key_file(path)
            except KeyFileError as err:
                log.warning("user key skipped: %s", err)
                continue
            user = key.user or path.stem
            if key.user and key.user != path.stem:
                log.warning("user key %s: issued to %r, not %r: skipped", path, key.user, path.stem)
                continue
            users[z85.decode(key.public)] = user
        self.agents, self.users = agents, users

    def verdict(self, domain: str, mechanism: str, public_key: bytes) -> Verdict:
        if mechanism != "CURVE":
            return Verdict(False, reason=f"mechanism {mechanism} (only CURVE is accepted)")
        known = self.agents if domain == AGENTS_DOMAIN else self.users if domain == CLIENTS_DOMAIN else None
        if known is None:
            return Verdict(False, reason=f"unknown domain {domain!r}")
        if public_key not in known and self._dir_stamp() != self._stamp:
            self.reload()
            known = self.agents if domain == AGENTS_DOMAIN else self.users
        user = known.get(public_key)
        if user is None:
            what = "agent" if domain == AGENTS_DOMAIN else "user"
            return Verdict(False, reason=f"unknown {what} key")
        return Verdict(True, user=user)

    # -- the ZAP protocol -----------------------------------------------------------------------------------

    def answer(self, frames: Sequence[bytes]) -> list[bytes]:
        """The reply frames to a ZAP request's frames (RFC 27)."""
        if len(frames) < 6 or frames[0] != ZAP_VERSION:
            request_id = frames[1] if len(frames) > 1 else b""
            return [ZAP_VERSION, request_id, b"500", b"malformed ZAP request", b"", b""]
        request_id, domain, address, _routing, mechanism = frames[1:6]
        credentials = list(frames[6:])
        domain_text = domain.decode("utf-8", "replace")
        mechanism_text = mechanism.decode("ascii", "replace")
        public_key = credentials[0] if mechanism_text == "CURVE" and credentials else b""
        verdict = self.verdict(domain_text, mechanism_text, public_key)
        if verdict.allowed:
            return [ZAP_VERSION, request_id, b"200", b"OK", verdict.user.encode(), b""]
        self.refused += 1
        self._log_refusal(domain_text, address.decode("utf-8", "replace"), public_key, verdict.reason)
        return [ZAP_VERSION, request_id, b"400", verdict.reason.encode(), b"", b""]

    def _log_refusal(self, domain: str, address: str, public_key: bytes, reason: str) -> None:
        now = self.monotonic()
        slot = (domain, public_key)
        if now - self._logged.get(slot, -LOG_EVERY) < LOG_EVERY:
            return
        if len(self._logged) > 10_000:
            self._logged.clear()
        self._logged[slot] = now
        shown = ""
        if len(public_key) == 32:
            from zmq.utils import z85

            shown = f" {z85.encode(public_key).decode()}"
        log.warning("%s socket: connection from %s refused: %s%s", domain, address or "?", reason, shown)


def _key_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".key" and p.is_file())
    except OSError:
        return []
