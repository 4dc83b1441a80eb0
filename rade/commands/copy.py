"""`rade cp [-a] [-L] SRC DEST`: files between a container and the host, as `docker cp` (one side is
`CONTAINER:PATH`; `-` is a tar stream on stdin or stdout). Parsing only; the rules are in
`engine.containers.copy`."""

from __future__ import annotations

import argparse
import sys

from jobs.errors import UsageError


def cmd_cp(args: argparse.Namespace) -> int:
    from engine.containers.copy import copy_in, copy_out, split_arg
    from engine.containers.store import ContainerStore

    src_container, src = split_arg(args.src) if args.src != "-" else (None, "-")
    dest_container, dest = split_arg(args.dest) if args.dest != "-" else (None, "-")
    if src_container is not None and dest_container is not None:
        raise UsageError("copying between two containers is not supported",
                         "copy to the host first, then into the other container")
    if src_container is None and dest_container is None:
        raise UsageError("one of SRC and DEST must be CONTAINER:PATH", "e.g. rade cp web:/etc/hosts ./hosts")
    if not (src if src_container is not None else dest):
        raise UsageError("the path in the container is empty", "use CONTAINER:/path")
    store = ContainerStore(args.root)
    if src_container is not None:
        size = copy_out(store, store.find(src_container), src, dest, follow=args.follow_link, archive=args.archive)
    else:
        size = copy_in(store, store.find(dest_container), src, dest, follow=args.follow_link, archive=args.archive)
    if not args.quiet and dest != "-" and sys.stderr.isatty():
        from jobs.units import format_decimal_size

        # As Docker's CLI: a line on the terminal only, never in a script's output.
        print(f"Successfully copied {format_decimal_size(size)} to {args.dest}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cp", help="copy files between a container and the host ('-': a tar stream)")
    p.add_argument("-a", "--archive", action="store_true", help="keep the owners (uid/gid) of the source")
    p.add_argument("-L", "--follow-link", action="store_true", help="follow a symlink named as the source")
    p.add_argument("-q", "--quiet", action="store_true", help="no 'Successfully copied' line on a terminal")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.set_defaults(func=cmd_cp)
