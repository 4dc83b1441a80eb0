"""The supervisor's event loop: one selector over its channels (`engine.containers.channels`), which
keeps each fd waiting for what its channel wants, drops closed ones, keeps one misbehaving attach client
from taking the supervisor down, and sends frames to the attach clients.

This is the part of `Supervisor` that knows nothing of the container: the supervisor holds the channels
and mixes this in, so the loop reads (and is tested) on its own terms.
"""

from __future__ import annotations

import logging
import selectors
import time

from engine.containers.attach import Frame, encode, encode_data
from engine.containers.channels import Channel, ClientChannel

log = logging.getLogger(__name__)

DRAIN_SECONDS = 2.0


class ChannelLoop:
    """The selector loop and the attach clients' frames, for `Supervisor`."""

    # What this works with, kept by `Supervisor`.
    cid: str
    selector: selectors.BaseSelector
    channels: dict[int, Channel]
    clients: list[ClientChannel]

    def add(self, channel: Channel) -> None:
        stale = self.channels.get(channel.fd)
        if stale is not None:
            # The fd number was closed and reused (a client left, another came) before the next sync.
            self.selector.unregister(channel.fd)
            if stale in self.clients:
                self.clients.remove(stale)
        self.channels[channel.fd] = channel
        self.selector.register(channel.fd, self._events(channel), channel)

    def _events(self, channel: Channel) -> int:
        if channel.wants_write():
            return selectors.EVENT_WRITE | (selectors.EVENT_READ if channel.reads else 0)
        # A write-only fd with nothing to write stays registered for reading: it reports an error
        # (the reader is gone) that way.
        return selectors.EVENT_READ

    def _sync(self) -> None:
        """Drop closed channels, update what each remaining one waits for."""
        for fd, channel in list(self.channels.items()):
            if channel.closed:
                self.selector.unregister(fd)
                del self.channels[fd]
                if channel in self.clients:
                    self.clients.remove(channel)
                continue
            events = self._events(channel)
            if self.selector.get_key(fd).events != events:
                self.selector.modify(fd, events, channel)

    def poll(self, timeout: float | None) -> None:
        self._sync()
        for key, mask in self.selector.select(timeout):
            channel: Channel = key.data
            if channel.closed or self.channels.get(key.fd) is not channel:
                continue
            try:
                if mask & selectors.EVENT_WRITE:
                    channel.on_writable()
                if mask & selectors.EVENT_READ and not channel.closed:
                    if channel.reads:
                        channel.on_readable()
                    elif not channel.pending:
                        channel.close()  # a write-only fd readable: the reader is gone
            except Exception:
                if not isinstance(channel, ClientChannel):
                    raise
                # One misbehaving client must not take the container's supervisor down with it.
                log.exception("container %s: attach client dropped", self.cid[:12])
                channel.close()
        self._sync()

    def broadcast(self, kind: Frame, data: bytes | dict, stream: str | None = None) -> None:
        frame = encode_data(kind, data) if isinstance(data, bytes) else encode(kind, data)
        for client in list(self.clients):
            if stream is None or client.wants(stream):
                client.queue(frame)

    def flush_clients(self, close: bool) -> None:
        """Send what is queued for clients; with `close`, then hang up on everyone (the signal that the
        container is gone and cleaned up, which control clients wait for)."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline and any(c.pending for c in self.clients if not c.closed):
            self.poll(deadline - time.monotonic())
        if close:
            for channel in list(self.channels.values()):
                channel.close()
            self._sync()
