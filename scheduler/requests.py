"""What clients ask the scheduler and what it answers: one handler a request kind, and the waits it holds.

A request comes in decoded, with who asked: the user its connection's key belongs to under `auth: curve`,
or None under `auth: none`, when the request's own word is all there is. `scheduler.access` says what that
user may do; `ClusterState` makes the change. The answer is a reply message, or None for a `wait` on a job
that has not ended: the wait is held here and answered by `answer_waiters()` once the job ends or its time
is up (the client then asks again).

Nothing here touches a socket or the store's commit: the daemon sends every reply only after the turn's
commit, so an answer always stands on committed state.
"""

from __future__ import annotations

from typing import Any

from jobs.errors import ProtocolError
from jobs.messages import Cancel, Drain, Message, Query, Reply, Resume, Submit
from scheduler import views
from scheduler.access import Access
from scheduler.accounting import acct_rows
from scheduler.clock import Clock
from scheduler.state import ClusterState

MAX_WAIT = 60.0

Waiter = tuple[bytes, bytes, float]  # the client's routing id, its request id, when the wait runs out
Outgoing = tuple[bytes, bytes, Message]  # the client's routing id, its request id, the reply


class ClientDesk:
    """The scheduler's side of the client protocol, over a `ClusterState`."""

    def __init__(self, state: ClusterState, access: Access, clock: Clock) -> None:
        self.state = state
        self.access = access
        self.clock = clock
        self._waiters: dict[int, list[Waiter]] = {}

    def answer(self, peer: bytes, request: bytes, msg: Message, user: str | None = None) -> Message | None:
        """The reply to one request, or None when it is a wait held for later."""
        known = user is not None
        if user is None:
            # auth: none: the request's word is all there is, and requests that name no one go unchecked.
            user = getattr(msg, "user", "") or "nobody"
        if isinstance(msg, Submit):
            return self.submit(msg, user, known)
        if isinstance(msg, Cancel):
            return self.cancel(msg, user)
        if isinstance(msg, Drain):
            return self.drain(msg, user, known)
        if isinstance(msg, Resume):
            return self.resume(msg, user, known)
        if isinstance(msg, Query):
            return self.query(peer, request, msg.what, msg.filters, user if known else None)
        raise ProtocolError(f"a {type(msg).__name__} is not a client request")

    def submit(self, msg: Submit, user: str, known: bool) -> Message:
        if known:
            self.access.ids(user)  # a user with no uid here is refused now, not when the job starts
        self.access.check_volumes(msg.spec)
        return Reply(data={"jobs": self.state.submit(msg.spec, user)})

    def cancel(self, msg: Cancel, user: str) -> Message:
        state, access = self.state, self.access
        admin = access.is_admin(user)
        for job_id in msg.job_ids:  # all or none: refused before anything is cancelled
            job = state.jobs.get(job_id)
            if job is not None and not admin:
                access.require_owner(user, job.user, job_id)
        return Reply(data={"results": {str(j): state.cancel(j, user, admin) for j in msg.job_ids}})

    def drain(self, msg: Drain, user: str, known: bool) -> Message:
        if known:
            self.access.require_admin(user, "drain nodes")
        return Reply(data={"results": {n: self.state.drain(n, msg.reason, msg.deadline) for n in msg.nodes}})

    def resume(self, msg: Resume, user: str, known: bool) -> Message:
        if known:
            self.access.require_admin(user, "resume nodes")
        return Reply(data={"results": {n: self.state.resume(n) for n in msg.nodes}})

    def query(self, peer: bytes, request: bytes, what: str, filters: dict[str, Any],
              user: str | None = None) -> Message | None:
        state = self.state
        if what in ("show", "wait"):
            job_id = _job_id(filters)
            detail = views.job_detail(state, job_id)  # NotFound for a job that never was
            if user is not None:
                self.access.require_owner(user, detail["user"], job_id)
        if what == "queue":
            user = filters.get("user")
            return Reply(data=views.queue_rows(state, str(user) if user else None, bool(filters.get("all"))))
        if what == "show":
            return Reply(data=detail)
        if what == "nodes":
            return Reply(data=views.node_rows(state))
        if what == "stats":
            return Reply(data=views.stats(state))
        if what == "acct":
            asked = filters.get("user")
            if user is not None and not self.access.is_admin(user):
                asked = user  # users account for their own jobs only; admins for anyone's
            rows = acct_rows(state.store.accounting(float(filters.get("since") or 0.0), str(asked) if asked else None),
                             self.clock.time())
            return Reply(data=[row.as_dict() for row in rows])
        if what == "wait":
            timeout = min(float(filters.get("timeout") or MAX_WAIT), MAX_WAIT)
            self._waiters.setdefault(job_id, []).append((peer, request, self.clock.monotonic() + timeout))
            return None
        raise ProtocolError(f"unknown query {what!r} (queue, show, nodes, stats, acct or wait)")

    def answer_waiters(self) -> list[Outgoing]:
        """The replies to `wait` queries whose job ended, or whose time is up (the client asks again)."""
        if not self._waiters:
            return []
        replies: list[Outgoing] = []
        now = self.clock.monotonic()
        for job_id in list(self._waiters):
            ended = self.state.ended.get(job_id)
            keep = []
            for peer, request, until in self._waiters[job_id]:
                if ended is not None:
                    data = {"ended": True, "state": ended[0].value, "exit_code": ended[1]}
                    replies.append((peer, request, Reply(data=data)))
                elif now >= until:
                    replies.append((peer, request, Reply(data={"ended": False})))
                else:
                    keep.append((peer, request, until))
            if keep:
                self._waiters[job_id] = keep
            else:
                del self._waiters[job_id]
        return replies


def _job_id(filters: dict[str, Any]) -> int:
    value = filters.get("job")
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ProtocolError(f"a job id is a number, not {value!r}")
    return int(value)
