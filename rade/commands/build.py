"""`rade build -t NAME[:TAG] [-f Containerfile] [--build-arg K=V] [--target STAGE] [--pull[=POLICY]] DIR`:
an image from a Containerfile (multi-stage: `--target` stops at a stage). A base image (`FROM`,
`COPY --from`) that is not local is pulled from its registry (`--pull`: always, or never), with
`rade pull`'s progress display on a terminal."""

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

    from engine.images.credentials import CredentialStore, default_auth_file
    from engine.images.transfer import RegistryOptions

    # For a base image that is not local: pulled as `rade pull` would, with the same logins.
    registry = RegistryOptions(credentials=CredentialStore(args.authfile or default_auth_file(args.root)),
                               tls_verify=args.tls_verify)
    builder = Builder(args.root, args.context, args.file, build_args, out=out if not args.quiet else
                      (lambda _line: None), use_cache=not args.no_cache, registry=registry,
                      progress=not args.quiet, pull=args.pull)
    image = builder.build(args.tag, target=args.target)
    if args.quiet:
        print(image.id)
    sys.stdout.flush()
    return 0


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "1", "yes", "false", "0", "no"):
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return value in ("true", "1", "yes")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build an image from a Containerfile")
    p.add_argument("-t", "--tag", help="NAME[:TAG] for the image")
    p.add_argument("-f", "--file", help="the Containerfile (default: DIR/Containerfile or DIR/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--target", metavar="STAGE", help="build up to this stage (a name given with FROM ... AS)")
    p.add_argument("--no-cache", action="store_true", help="run every step again (the results are cached anew)")
    p.add_argument("--pull", nargs="?", const="always", default="missing", choices=("always", "missing", "never"),
                   help="pull base images: always (the flag alone: a moved tag is seen), missing (default), never")
    p.add_argument("--tls-verify", type=_bool, default=True, metavar="BOOL",
                   help="verify the TLS certificate of a registry a base image is pulled from (default true)")
    p.add_argument("--authfile", default=None,
                   help="the saved logins for pulling base images (default: $RADE_AUTH_FILE or ROOT/auth.json)")
    p.add_argument("context", metavar="DIR")
    p.set_defaults(func=cmd_build)
