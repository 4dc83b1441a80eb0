"""`rade build -t NAME[:TAG] [-f Containerfile] [--build-arg K=V] [--target STAGE] DIR`: an image from a
Containerfile (multi-stage: `--target` stops at a stage)."""

from __future__ import annotations

import argparse
import sys

from jobs.errors import UsageError


def cmd_build(args: argparse.Namespace) -> int:
    from engine.build.builder import Builder

    build_args = {}
    for item in args.build_arg:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"--build-arg {item!r}: no name", "use --build-arg NAME=VALUE")
        build_args[key] = value if sep else ""

    def out(line: str) -> None:
        print(line, flush=True)

    builder = Builder(args.root, args.context, args.file, build_args, out=out if not args.quiet else
                      (lambda _line: None), use_cache=not args.no_cache)
    image = builder.build(args.tag, target=args.target)
    if args.quiet:
        print(image.id)
    sys.stdout.flush()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build an image from a Containerfile")
    p.add_argument("-t", "--tag", help="NAME[:TAG] for the image")
    p.add_argument("-f", "--file", help="the Containerfile (default: DIR/Containerfile or DIR/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--target", metavar="STAGE", help="build up to this stage (a name given with FROM ... AS)")
    p.add_argument("--no-cache", action="store_true", help="run every step again (the results are cached anew)")
    p.add_argument("context", metavar="DIR")
    p.set_defaults(func=cmd_build)
