"""`rade keys init | user NAME`: the CURVE keys a cluster authenticates with (formats in `jobs.keyfiles`).

`init` makes the scheduler's key pair and the agent key in the key directory (`--dir`, default
ROOT/keys); it refuses to replace keys that exist unless `--force`, since every agent and user key
issued against the old scheduler key would stop working. `user NAME` makes a key pair for a user: the
public half goes to the key directory's `users/NAME.key` (the scheduler accepts it from then on, without
a restart), the secret half, with the scheduler's public key in it, to `~NAME/.rade/key` owned by the
user and mode 0600, or to `--out PATH`.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from pathlib import Path

from jobs.errors import RadeError, UsageError


class KeysError(RadeError):
    """Keys cannot be made or written where asked."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keys", help="CURVE keys: the scheduler's, the agents', and users'")
    sub = p.add_subparsers(dest="action", metavar="init|user", required=True)
    init = sub.add_parser("init", help="make the scheduler's key pair and the agent key")
    init.add_argument("--dir", help="the key directory (default ROOT/keys)")
    init.add_argument("--force", action="store_true", help="replace existing keys (every issued key stops working)")
    init.set_defaults(func=cmd_init)
    user = sub.add_parser("user", help="issue a user's key: public half to the key directory, secret to the user")
    user.add_argument("name", metavar="NAME")
    user.add_argument("--dir", help="the key directory (default ROOT/keys)")
    user.add_argument("--out", metavar="PATH", help="where the user's secret key goes (default ~NAME/.rade/key)")
    user.set_defaults(func=cmd_user)


def _key_dir(args: argparse.Namespace):
    from jobs.keyfiles import KeyDir, default_key_dir

    return KeyDir(Path(args.dir) if args.dir else default_key_dir(args.root))


def new_pair(metadata: dict[str, str] | None = None):
    """A fresh CURVE key pair as a KeyFile."""
    import zmq

    from jobs.keyfiles import KeyFile

    public, secret = zmq.curve_keypair()
    return KeyFile(public.decode(), secret.decode(), dict(metadata or {}))


def init_keys(keys, force: bool = False) -> list[str]:
    """Make the scheduler's pair and the agent key in the KeyDir `keys`; the files written."""
    from jobs.keyfiles import KeyFile, write_key_file

    if keys.scheduler_secret.exists() and not force:
        raise KeysError(f"{keys.path} holds keys already", "keep them; '--force' replaces them and every key issued")
    scheduler = new_pair({"role": "scheduler"})
    agent = new_pair({"role": "agent", "scheduler-key": scheduler.public})
    write_key_file(keys.scheduler_secret, scheduler, comment="rade scheduler key")
    write_key_file(keys.scheduler_public, KeyFile(scheduler.public, None, {"role": "scheduler"}),
                   comment="rade scheduler key")
    write_key_file(keys.agent_secret, agent, comment="rade agent key")
    keys.agents.mkdir(exist_ok=True)
    keys.users.mkdir(exist_ok=True)
    return [str(keys.scheduler_secret), str(keys.scheduler_public), str(keys.agent_secret)]


def issue_user_key(keys, name: str, out: str | None = None, owner: tuple[int, int] | None = None) -> str:
    """Issue `name` a key: its public half into the key directory, the secret (with the scheduler's public
    key) to `out`; where the secret went."""
    from jobs.keyfiles import KeyFile, read_key_file, write_key_file

    if not name or "/" in name or name.startswith(".") or not name.isprintable():
        raise UsageError(f"{name!r} is not a user name")
    scheduler = read_key_file(keys.scheduler_public)
    pair = new_pair({"user": name, "scheduler-key": scheduler.public})
    if out is None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise KeysError(f"no user {name!r} on this machine to give the key to",
                            "give --out PATH and hand the file over yourself") from None
        out = os.path.join(entry.pw_dir, ".rade", "key")
        owner = owner or (entry.pw_uid, entry.pw_gid)
        directory = Path(out).parent
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chown(directory, *owner)
    try:
        write_key_file(out, pair, owner=owner, comment=f"rade key of user {name}")
    except OSError as err:
        raise KeysError(f"{out}: cannot be written: {err.strerror}") from None
    write_key_file(keys.user_public(name), KeyFile(pair.public, None, {"user": name}), comment=f"rade user {name}")
    return out


def cmd_init(args: argparse.Namespace) -> int:
    for path in init_keys(_key_dir(args), args.force):
        sys.stdout.write(f"wrote {path}\n")
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    keys = _key_dir(args)
    out = issue_user_key(keys, args.name, args.out)
    sys.stdout.write(f"wrote {out} (secret, mode 0600) and {keys.user_public(args.name)}\n")
    return 0
