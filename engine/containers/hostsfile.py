"""The name in a running container's generated /etc/hosts, changed on `rade rename`.

A bridge container's /etc/hosts is generated at launch with its own address, its host name and its
`--name` as an alias (`engine.network.hosts.render_hosts`); /etc/hostname holds the host name only (the
short id unless `--hostname` was given), which a rename does not touch, as in Docker. Docker's rename
updates the name the container's network endpoint answers to; here the alias in the hosts file is that
name, so a rename rewrites it for a running (or paused) container. A stopped one needs nothing: its next
start generates the file from the record. Host and none networks never put the name there, and a volume
mounted at /etc/hosts is the user's file, left alone.

The file is a bind mount of a file the launch unlinked, reachable only through the container's root:
it is rewritten in place (a rename over a mount point is refused), the new text written over the old and
then cut to length so that a reader never finds it empty. Paths are opened without following symlinks,
so a container that replaced /etc or /etc/hosts with a link cannot make this write a host file.
"""

from __future__ import annotations

import logging
import os

from engine.containers.launchspec import default_hostname
from engine.containers.record import ContainerRecord
from engine.containers.status import is_active
from engine.errors import ContainerError

log = logging.getLogger(__name__)


def renamed_hosts(text: str, address: str, hostname: str, old: str, new: str) -> str:
    """`text` with the alias `old` replaced by `new` on the line(s) for `address`; the host name stays
    (it may equal the old name: `--hostname web --name web`), and so do entries the container added."""
    out = []
    for line in text.splitlines(keepends=True):
        fields = line.split()
        if fields and fields[0] == address and old in fields[1:]:
            names = [name for name in fields[1:] if name != old or name == hostname]
            if new not in names:
                names.append(new)
            line = f"{fields[0]}\t{' '.join(names)}\n"
        out.append(line)
    return "".join(out)


def has_generated_hosts(record: ContainerRecord) -> bool:
    """Whether rade wrote the container's name into its /etc/hosts: a live bridge container without a
    volume of its own at /etc/hosts."""
    return (is_active(record.status) and bool(record.pid) and bool(record.network.ip_address)
            and record.host_config.network not in ("host", "none")
            and not any(os.path.normpath(v.destination) == "/etc/hosts" for v in record.host_config.volumes))


def rename_in_hosts(record: ContainerRecord, old: str, new: str) -> bool:
    """Rewrite the alias `old` as `new` in the running container's /etc/hosts; whether it did (False: the
    container has no such file, or exited meanwhile: its next start writes the new name)."""
    if not has_generated_hosts(record):
        return False
    try:
        proc = os.open(f"/proc/{record.pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        # The pid is held by the open directory: check it is still this container's process.
        with open(os.open("cgroup", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)) as fh:
            if record.id not in fh.read():
                return False
        etc = os.open("root/etc", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=proc)
        try:
            fd = os.open("hosts", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=etc)
        finally:
            os.close(etc)
        with os.fdopen(fd, "r+b") as fh:
            text = fh.read().decode()
            changed = renamed_hosts(text, record.network.ip_address, default_hostname(record), old, new)
            if changed == text:
                return False
            data = changed.encode()
            fh.seek(0)
            fh.write(data)
            fh.truncate(len(data))
        return True
    except (FileNotFoundError, ProcessLookupError):
        return False  # the container exited meanwhile
    except OSError as err:
        raise ContainerError(f"container {old}: cannot update its /etc/hosts for the new name: {err.strerror}",
                             "the container may have changed /etc; restart it to regenerate the file") from None
    finally:
        os.close(proc)
