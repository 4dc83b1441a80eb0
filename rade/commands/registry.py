"""`rade pull`, `rade push`, `rade login`, `rade logout`: images to and from OCI distribution registries.

Thin: parse the arguments, open the store and the saved logins, call `engine.images.transfer`, print
one result line on stdout (the image id for a pull, the pushed digest for a push). Progress goes to
stderr, and only when it is a terminal.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from jobs.errors import UsageError


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _platform(text: str) -> str:
    from engine.errors import RegistryError
    from engine.images.manifest_list import parse_platform

    try:
        parse_platform(text)
    except RegistryError as err:
        raise argparse.ArgumentTypeError(err.message) from None
    return text


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-verify", type=_bool, default=True, metavar="BOOL",
                        help="verify the registry's TLS certificate (default true; loopback registries use HTTP)")
    parser.add_argument("--authfile", default=None,
                        help="the saved logins (default: $RADE_AUTH_FILE or ROOT/auth.json)")


def register(subparsers: argparse._SubParsersAction) -> None:
    pull = subparsers.add_parser("pull", help="pull an image from a registry",
                                 description="Pull an image (for a multi-platform one, this machine's platform).")
    pull.add_argument("reference", metavar="REF", help="e.g. 127.0.0.1:5000/ns/app:tag or name@sha256:...")
    pull.add_argument("--platform", type=_platform, default=None, metavar="OS/ARCH[/VARIANT]",
                      help="the platform to take from a manifest list (default: this machine's)")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    _add_connection_options(pull)
    pull.set_defaults(func=run_pull)

    push = subparsers.add_parser("push", help="push an image to a registry",
                                 description="Push a local image; blobs the registry has are not sent again.")
    push.add_argument("image", metavar="IMAGE", help="the local image (a registry reference names where it goes)")
    push.add_argument("destination", metavar="DEST", nargs="?", default=None,
                      help="where to push it, if not to IMAGE's own name (registry/name:tag)")
    push.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    _add_connection_options(push)
    push.set_defaults(func=run_push)

    login = subparsers.add_parser("login", help="log in to a registry and save the login",
                                  description="Check a login with the registry, then save it (file mode 0600).")
    login.add_argument("registry", metavar="REGISTRY", help="host[:port], e.g. 127.0.0.1:5000 or docker.io")
    login.add_argument("-u", "--username", default=None)
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _add_connection_options(login)
    login.set_defaults(func=run_login)

    logout = subparsers.add_parser("logout", help="forget the saved login for a registry")
    logout.add_argument("registry", metavar="REGISTRY")
    logout.add_argument("--authfile", default=None)
    logout.set_defaults(func=run_logout)


def _options(args: argparse.Namespace, platform: str | None = None):  # -> RegistryOptions
    from engine.images.credentials import CredentialStore, default_auth_file
    from engine.images.manifest_list import parse_platform
    from engine.images.transfer import RegistryOptions

    credentials = CredentialStore(args.authfile or default_auth_file(args.root))
    return RegistryOptions(credentials=credentials, tls_verify=args.tls_verify,
                           platform=parse_platform(platform) if platform else None)


def _progress(args: argparse.Namespace):  # -> TransferProgress
    from engine.images.progress import NoProgress, progress_for

    return NoProgress() if args.quiet else progress_for(sys.stderr)


def run_pull(args: argparse.Namespace) -> int:
    from engine.images.store import ImageStore
    from engine.images.transfer import pull

    store = ImageStore(args.root)
    progress = _progress(args)
    try:
        image = pull(store, args.reference, _options(args, args.platform), progress)
    finally:
        progress.close()
    print(image.id)
    return 0


def run_push(args: argparse.Namespace) -> int:
    from engine.images.store import ImageStore
    from engine.images.transfer import push_image

    store = ImageStore(args.root)
    progress = _progress(args)
    try:
        result = push_image(store, args.image, args.destination, _options(args), progress)
    finally:
        progress.close()
    mounted = f", {len(result.mounted)} mounted" if result.mounted else ""
    print(f"{result.reference}@{result.digest} ({len(result.moved)} blobs pushed, "
          f"{len(result.present)} already there{mounted})")
    return 0


def run_login(args: argparse.Namespace) -> int:
    from engine.images.auth import Credentials
    from engine.images.credentials import registry_host
    from engine.images.registry import RegistryClient, endpoint_for

    username = args.username
    if args.password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --username", "rade login REGISTRY -u USER --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif sys.stdin.isatty():
        username = username or input("Username: ").strip()
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("no terminal to ask for the password on",
                         "pipe it in: rade login REGISTRY -u USER --password-stdin")
    if not username or not password:
        raise UsageError("a login needs a user name and a password")
    credentials = Credentials(username, password)
    options = _options(args)
    registry = registry_host(args.registry)
    # As `docker login` does: save only what the registry accepted.
    with RegistryClient(endpoint_for(registry, options.tls_verify), credentials) as client:
        client.ping()
    options.credentials.save(registry, credentials)
    print("Login Succeeded")
    return 0


def run_logout(args: argparse.Namespace) -> int:
    from engine.images.credentials import CredentialStore, default_auth_file

    store = CredentialStore(args.authfile or default_auth_file(args.root))
    if store.remove(args.registry):
        print(f"Removed login credentials for {args.registry}")
    else:
        print(f"Not logged in to {args.registry}")
    return 0
