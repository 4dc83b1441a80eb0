"""`rade ps`, `logs`, `top`, `stats`, `inspect` (containers first, then images), `diff`, `commit`, `exec`, `info`
and `volume`: looking at and into containers on this machine."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _store(args: argparse.Namespace):
    from engine.containers.store import ContainerStore

    return ContainerStore(args.root)


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def cmd_ps(args: argparse.Namespace) -> int:
    from engine.containers import views
    from engine.containers.status import is_active

    store = _store(args)
    records = store.all()
    if any(is_active(r.status) for r in records):
        # Only a record that says running can be stale (its supervisor killed): the lifecycle's check
        # is imported for those alone.
        from engine.containers.lifecycle import refresh

        records = [refresh(store, r) for r in records]
    if not args.all:
        records = [r for r in records if is_active(r.status)]
    if args.quiet:
        for r in records:
            print(r.short_id)
        return 0
    now = time.time()
    if args.json:
        print(json.dumps([dict(zip(views.PS_COLUMNS, views.ps_row(r, now))) for r in records], indent=2))
        return 0
    print_table(views.PS_COLUMNS, [views.ps_row(r, now) for r in records])
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from engine.containers import logs
    from engine.containers.status import is_active

    store = _store(args)
    record = store.find(args.container)
    cdir = store.dir(record.id)

    client = None
    if args.follow and is_active(record.status):
        from engine.containers.client import AttachClient
        from engine.errors import ContainerError

        # Connected before the file is read: every line written later wakes us with a frame, and the
        # supervisor hangs up when the container is gone. The lines themselves are read from the file.
        try:
            client = AttachClient(cdir, stdout=True, stderr=True)
        except ContainerError:
            client = None

    def more() -> bool:
        return client.receive(None) is not None

    out = sys.stdout.buffer
    try:
        for entry in logs.read(cdir.log, tail=args.tail, follow=more if client is not None else None):
            out.write(logs.render(entry, args.timestamps))
            if client is not None:
                out.flush()
    finally:
        if client is not None:
            client.close()
    out.flush()
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from engine.containers import processes
    from engine.errors import ContainerError

    store = _store(args)
    record = store.find(args.container)
    if not record.pid:
        raise ContainerError(f"container {args.container} is not running")
    rows = processes.table(record.pid)
    print_table(processes.COLUMNS, rows)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from engine.cgroups import open_cgroup
    from engine.cgroups.driver import DEFAULT_PARENT
    from engine.containers import lifecycle
    from engine.containers.hostinfo import info
    from engine.containers.status import is_active
    from jobs.errors import RadeError
    from jobs.units import format_size

    store = _store(args)
    records = [store.find(ref) for ref in args.containers] or store.all()
    records = [r for r in (lifecycle.refresh(store, r) for r in records) if is_active(r.status)]
    host_memory = info(args.root)["MemTotal"]
    groups = {r.id: open_cgroup(r.id, r.host_config.resources.cgroup_parent or DEFAULT_PARENT) for r in records}
    before = {cid: (time.monotonic(), g.stats().cpu_seconds) for cid, g in groups.items()}
    while True:
        time.sleep(0.5 if args.no_stream else 1.0)
        rows = []
        for record in records:
            try:
                now = groups[record.id].stats()
            except (RadeError, OSError):
                continue  # it exited between samples: left out
            then, cpu = before[record.id]
            elapsed = time.monotonic() - then
            before[record.id] = (time.monotonic(), now.cpu_seconds)
            limit = record.host_config.resources.memory or host_memory
            rows.append((record.short_id, record.name, f"{100 * (now.cpu_seconds - cpu) / elapsed:.2f}%",
                         f"{format_size(now.memory_current)} / {format_size(limit)}",
                         f"{100 * now.memory_current / limit:.2f}%", str(now.pids)))
        print_table(("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"), rows)
        if args.no_stream:
            return 0
        print()


def cmd_inspect(args: argparse.Namespace) -> int:
    from engine.containers import lifecycle, views
    from engine.errors import ContainerError, ImageError

    store = _store(args)
    out = []
    for ref in args.objects:
        try:
            record = lifecycle.refresh(store, store.find(ref))
            out.append(views.inspect(record, store.dir(record.id)))
            continue
        except ContainerError:
            pass
        image_view = _image_inspector()
        if image_view is None:
            raise ContainerError(f"no such container: {ref}")
        try:
            out.append(image_view(args.root, ref))
        except ImageError:
            raise ContainerError(f"no such container or image: {ref}", "see 'rade ps -a' and 'rade images'") from None
    if args.format:
        for item in out:
            print(render_format(args.format, item))
        return 0
    print(json.dumps(out, indent=4))
    return 0


def _image_inspector():
    """The image store's inspect view, if it offers one."""
    try:
        from rade.commands import images
    except ImportError:
        return None
    return getattr(images, "inspect_image", None)


def render_format(template: str, data: dict) -> str:
    """A small subset of Go templates: `{{.State.Status}}`, `{{json .Config}}`."""
    import re

    def value(path: str):
        node = data
        for part in path.strip(".").split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def sub(match: re.Match) -> str:
        expr = match.group(1).strip()
        if expr.startswith("json "):
            return json.dumps(value(expr[5:].strip()))
        got = value(expr)
        if isinstance(got, bool):
            return "true" if got else "false"
        return "" if got is None else (json.dumps(got) if isinstance(got, dict | list) else str(got))

    return re.sub(r"\{\{(.*?)\}\}", sub, template)


def cmd_diff(args: argparse.Namespace) -> int:
    from engine.containers import diff, launchspec

    store = _store(args)
    record = store.find(args.container)
    layers = launchspec.image_layers(args.root, record.config.image_id)
    for change in diff.changes(store.dir(record.id).upper, layers, launchspec.mountpoints(record)):
        print(change)
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    from engine.containers.commit import commit

    store = _store(args)
    changes = {}
    image = commit(store, store.find(args.container), args.image, message=args.message, author=args.author,
                   changes=changes)
    print(image.id)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from engine.containers.execute import exec_in

    store = _store(args)
    if not args.command:
        from jobs.errors import UsageError

        raise UsageError("exec needs a command", "e.g. rade exec C sh")
    return exec_in(store, store.find(args.container), tuple(args.command), interactive=args.interactive,
                   tty=args.tty, env=tuple(args.env), user=args.user, workdir=args.workdir)


def cmd_info(args: argparse.Namespace) -> int:
    from engine.containers.hostinfo import info

    facts = info(args.root)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    for key, value in facts.items():
        print(f"{key}: {value}")
    return 0


def cmd_volume(args: argparse.Namespace) -> int:
    from engine.containers.lifecycle import volume_users
    from engine.containers.volumes import VolumeStore

    vstore = VolumeStore(args.root)
    if args.action == "ls":
        names = vstore.names()
        if args.quiet:
            for name in names:
                print(name)
        else:
            print_table(("DRIVER", "VOLUME NAME"), [("local", n) for n in names])
    elif args.action == "create":
        name = args.names[0] if args.names else os.urandom(32).hex()
        vstore.create(name)
        print(name)
    elif args.action == "rm":
        for name in args.names:
            vstore.remove(name, [] if args.force else volume_users(_store(args), name))
            print(name)
    elif args.action == "inspect":
        from engine.containers.volumes import VolumeError

        for name in args.names:
            if not vstore.exists(name):
                raise VolumeError(f"no such volume: {name}", "see 'rade volume ls'")
        print(json.dumps([{"Name": n, "Driver": "local", "Mountpoint": str(vstore.data_dir(n))}
                          for n in args.names], indent=4))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also stopped ones")
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ps)
    p = sub.add_parser("logs", help="a container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int, default=None, help="only the last N lines")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("container")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("top", help="the processes of a container")
    p.add_argument("container")
    p.set_defaults(func=cmd_top)
    p = sub.add_parser("stats", help="CPU, memory and tasks of running containers")
    p.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    p.add_argument("containers", nargs="*")
    p.set_defaults(func=cmd_stats)
    p = sub.add_parser("inspect", help="details of containers or images, as JSON")
    p.add_argument("-f", "--format", help="a Go-template-like format, e.g. '{{.State.Status}}'")
    p.add_argument("objects", nargs="+")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("diff", help="files a container added (A), changed (C) or deleted (D)")
    p.add_argument("container")
    p.set_defaults(func=cmd_diff)
    p = sub.add_parser("commit", help="make an image from a container's changes")
    p.add_argument("-m", "--message", default="")
    p.add_argument("-a", "--author", default="")
    p.add_argument("container")
    p.add_argument("image")
    p.set_defaults(func=cmd_commit)
    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)
    p = sub.add_parser("info", help="what this machine offers containers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("volume", help="named volumes: ls, create, rm, inspect")
    p.add_argument("action", choices=("ls", "create", "rm", "inspect"))
    p.add_argument("names", nargs="*")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.set_defaults(func=cmd_volume)
