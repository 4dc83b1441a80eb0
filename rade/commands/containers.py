"""`rade run`, `create`, `start`, `stop`, `kill`, `restart`, `rm`, `wait`, `attach`: the container lifecycle
on this machine, as Docker users type it. Parsing only; the rules are in `engine.containers.lifecycle`.
"""

from __future__ import annotations

import argparse
import os
import signal

from jobs.errors import RadeError, UsageError


def add_create_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", help="a name for the container")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]", help="mount a volume")
    p.add_argument("--volumes-from", action="append", default=[], metavar="C[:ro]",
                   help="mount the volumes of another container")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CTR",
                   help="publish a container port on the host")
    p.add_argument("-P", "--publish-all", action="store_true", help="publish every exposed port")
    p.add_argument("--network", "--net", default="bridge", choices=("bridge", "host", "none"))
    p.add_argument("--cpus", help="CPUs' worth of time (e.g. 0.5)")
    p.add_argument("--memory", "-m", help="memory limit (e.g. 512M)")
    p.add_argument("--memory-swap", help="memory plus swap limit (-1: unlimited swap)")
    p.add_argument("--cpu-shares", "-c", type=int, help="relative CPU weight (1024 = default)")
    p.add_argument("--pids-limit", type=int, help="most processes at once")
    p.add_argument("--cpuset-cpus", help="CPUs allowed (e.g. 0-3,6)")
    p.add_argument("--cpuset-mems", help="memory nodes allowed")
    p.add_argument("-u", "--user", help="UID[:GID] or NAME[:GROUP]")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("--hostname", "-h", help="the container's host name")
    p.add_argument("--read-only", action="store_true", help="mount the root read-only")
    p.add_argument("--entrypoint", help="override the image's entrypoint")
    p.add_argument("-l", "--label", action="append", default=[], metavar="K=V")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def create_options(args: argparse.Namespace):
    """The command line as CreateOptions."""
    from engine.containers.lifecycle import CreateOptions
    from engine.containers.record import Resources

    swap = cpus = memory = None
    if any(v is not None for v in (args.memory_swap, args.cpuset_cpus, args.cpuset_mems, args.cpus, args.memory)):
        from jobs.units import parse_cpu_list, parse_cpus, parse_size  # only when a limit is given

        if args.memory_swap is not None:
            swap = -1 if args.memory_swap.strip() == "-1" else parse_size(args.memory_swap)
        for text in (args.cpuset_cpus, args.cpuset_mems):
            if text is not None:
                parse_cpu_list(text)
        cpus = parse_cpus(args.cpus) if args.cpus is not None else None
        memory = parse_size(args.memory) if args.memory is not None else None
    resources = Resources(
        cpus=cpus, memory=memory, memory_swap=swap, cpu_shares=args.cpu_shares, pids_limit=args.pids_limit,
        cpuset_cpus=args.cpuset_cpus, cpuset_mems=args.cpuset_mems)
    labels = []
    for item in args.label:
        key, _, value = item.partition("=")
        labels.append((key, value))
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = (args.entrypoint,) if args.entrypoint else ()
    return CreateOptions(
        image=args.image, command=tuple(args.command), entrypoint=entrypoint, name=args.name,
        env=tuple(args.env), volumes=tuple(args.volume), volumes_from=tuple(args.volumes_from),
        ports=tuple(args.publish), publish_all=args.publish_all, network=args.network, resources=resources,
        user=args.user, workdir=args.workdir, hostname=args.hostname, read_only=args.read_only, tty=args.tty,
        interactive=args.interactive, auto_remove=args.rm, labels=tuple(labels), cwd=os.getcwd())


def _store(args: argparse.Namespace):
    from engine.containers.store import ContainerStore

    return ContainerStore(args.root)


def _failed(outcome_error: dict):
    from engine.errors import ContainerError

    err = ContainerError(outcome_error.get("message", "the container failed to start"), outcome_error.get("hint"))
    err.exit_code = int(outcome_error.get("exit_code", 125))
    return err


def _wait_started(reader) -> None:
    """Wait for a detached container's supervisor to report the launch; its failure becomes the error."""
    try:
        message = reader.until_started()
    finally:
        reader.close()
    if message.get("state") == "error":
        raise _failed(message)


def _attach_and_relay(store, record, interactive: bool, reader=None) -> int:
    """Attach this process's stdio (raw terminal for -t) until the container exits; its exit code."""
    from engine.containers.client import DETACH_KEYS, AttachClient

    tty = record.config.tty
    size = None
    if tty:
        from engine.containers.terminal import window_size

        size = window_size(0)
    sock = None
    if reader is not None:
        sock, reader.attach = reader.attach, None
    client = AttachClient(store.dir(record.id), stdin=interactive, stdout=True, stderr=True, size=size, sock=sock)
    if reader is not None:
        reader.close()
    stdin_fd = 0 if interactive else None
    previous = {}
    if not tty:
        # As `docker run` proxies signals: ^C and kill of the client reach the container.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, lambda s, _f: client.signal(s))
    try:
        if tty and interactive:
            from engine.containers.terminal import raw_terminal

            with raw_terminal(0, client.resize):
                outcome = client.relay(stdin_fd, 1, 2, detach_keys=DETACH_KEYS)
        else:
            outcome = client.relay(stdin_fd, 1, 2)
        if outcome.error is not None:
            raise _failed(outcome.error)
        if outcome.detached:
            return 0
        if record.host_config.auto_remove:
            client.wait_closed()  # until the supervisor hangs up: the container is gone then
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        client.close()
    if outcome.exit_code is not None:
        return outcome.exit_code
    return _final_code(store, record)


def _final_code(store, record) -> int:
    from engine.containers import lifecycle
    from engine.errors import ContainerError

    try:
        final = lifecycle.wait(store, store.get(record.id))
    except ContainerError:
        return 125
    if final.status.value == "created":
        # Hung up on without a start or an error report: the supervisor died before launching.
        raise ContainerError(f"container {final.name} was not started: its supervisor exited",
                             "see supervisor.log in the container's directory")
    return final.exit_code


def _create_and_start(args: argparse.Namespace):
    """(store, record, reader) of `rade run`: the container made and its supervisor started.

    With a CPU idle, the supervisor is forked first and imports what it needs on that CPU while this
    process makes the record (`prespawn`); on a busy machine the two would only take turns, and forking
    before the record is made costs pages copied on write, so the supervisor is forked after it."""
    from engine.containers.spawn import has_idle_cpu, prespawn

    if not has_idle_cpu():
        from engine.containers import lifecycle

        store = _store(args)
        record = lifecycle.create(store, create_options(args))
        return store, record, lifecycle.start(store, record, attach=not args.detach, fork_once=True,
                                              preconnect=not args.detach)
    pending = prespawn(args.root, wait_attach=not args.detach, fork_once=True, preconnect=not args.detach)
    try:
        from engine.containers import launchspec, lifecycle

        store = _store(args)
        record = lifecycle.create(store, create_options(args))
    except BaseException:
        pending.cancel()
        raise
    try:
        # The image store is loaded here already: the supervisor need not import it for the layers.
        layers: list[str] | None = [str(p) for p in launchspec.image_layers(store.root, record.config.image_id)]
    except RadeError:
        layers = None  # the supervisor looks again, and records the failure as the container's
    return store, record, pending.start(record.id, layers)


def cmd_run(args: argparse.Namespace) -> int:
    store, record, reader = _create_and_start(args)
    if args.detach:
        _wait_started(reader)
        print(record.id)
        return 0
    # Attached through the connection made before the fork: the supervisor launches once it has our
    # hello, so no output is missed.
    return _attach_and_relay(store, record, args.interactive, reader)


def cmd_create(args: argparse.Namespace) -> int:
    from engine.containers import lifecycle

    record = lifecycle.create(_store(args), create_options(args))
    print(record.id)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from engine.containers import lifecycle

    store = _store(args)
    if args.attach and len(args.containers) > 1:
        raise UsageError("start -a takes one container")
    for ref in args.containers:
        record = store.find(ref)
        if record.status.value == "running":
            print(ref)
            continue
        reader = lifecycle.start(store, record, attach=args.attach, fork_once=True, preconnect=args.attach)
        if args.attach:
            return _attach_and_relay(store, record, args.interactive, reader)
        _wait_started(reader)
        print(ref)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from engine.containers import lifecycle

    store = _store(args)
    for ref in args.containers:
        lifecycle.stop(store, store.find(ref), timeout=float(args.time))
        print(ref)
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from engine.containers import lifecycle

    store = _store(args)
    for ref in args.containers:
        record = lifecycle.stop(store, store.find(ref), timeout=float(args.time))
        reader = lifecycle.start(store, store.get(record.id), fork_once=True)
        _wait_started(reader)
        print(ref)
    return 0


def parse_signal(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UsageError(f"unknown signal {text!r}", "use a name like TERM, KILL, HUP or a number") from None


def cmd_kill(args: argparse.Namespace) -> int:
    from engine.containers import lifecycle

    store = _store(args)
    signum = parse_signal(args.signal)
    for ref in args.containers:
        lifecycle.signal_container(store, store.find(ref), signum)
        print(ref)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from engine.containers import lifecycle

    store = _store(args)
    for ref in args.containers:
        lifecycle.remove(store, store.find(ref), force=args.force, volumes=args.volumes)
        print(ref)
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    from engine.containers import lifecycle

    store = _store(args)
    for ref in args.containers:
        print(lifecycle.wait(store, store.find(ref)).exit_code)
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    from engine.containers.status import can_signal
    from engine.errors import ContainerError

    store = _store(args)
    record = store.find(args.container)
    # A paused container still has its supervisor (outside the frozen cgroup) to attach to: as with Docker,
    # the attach holds and the output flows again on unpause.
    if not can_signal(record.status):
        raise ContainerError(f"container {args.container} is not running", "start it with 'rade start -a'")
    return _attach_and_relay(store, record, record.config.open_stdin and not args.no_stdin)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a command in a new container", add_help=False)
    p.add_argument("--help", action="help")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    add_create_options(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("create", help="create a container without starting it", add_help=False)
    p.add_argument("--help", action="help")
    add_create_options(p)
    p.set_defaults(func=cmd_create)
    p = sub.add_parser("start", help="start stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="attach to its output and wait")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_start)
    for name, func, what in (("stop", cmd_stop, "stop containers (SIGTERM, then SIGKILL)"),
                             ("restart", cmd_restart, "stop then start containers")):
        p = sub.add_parser(name, help=what)
        p.add_argument("-t", "--time", type=int, default=10, help="seconds of grace before SIGKILL")
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=func)
    p = sub.add_parser("kill", help="send a signal to containers")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_kill)
    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("-v", "--volumes", action="store_true", help="also remove its anonymous volumes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("wait", help="wait for containers to exit; print their exit codes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_wait)
    p = sub.add_parser("attach", help="attach to a running (or paused) container's stdio")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("container")
    p.set_defaults(func=cmd_attach)
