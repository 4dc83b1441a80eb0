"""CURVE key files: their text form and where a cluster keeps them. No sockets, no key generation.

A key file is ZeroMQ's certificate text (ZPL, as czmq's `zcert` and pyzmq's `zmq.auth` write it), the
keys in Z85 (40 characters). A public file holds `public-key`; a secret file (`*.key_secret`, mode
0600) holds both keys. `metadata` carries what rade adds: the user a key belongs to, and in a user's
file the scheduler's public key, so one file is all a user needs to talk to the cluster.

    metadata
        user = "alice"
        scheduler-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    curve
        public-key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
        secret-key = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"

A key directory (`keys` in the scheduler's and agents' configuration, `rade keys init` makes it):

    scheduler.key, scheduler.key_secret   the scheduler's pair
    agent.key_secret                      the key agents connect with
    agents/*.key                          agent public keys the scheduler accepts
    users/NAME.key                        user public keys the scheduler accepts, `user` naming the owner

The scheduler and the agents read these; the `rade` command writes them. Both import this module, which
is why it lives with the other shared formats in `jobs`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from jobs.errors import RadeError

Z85_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
KEY_LENGTH = 40
MAX_KEY_FILE = 64 * 1024


class KeyFileError(RadeError):
    """A key file is missing, unreadable or malformed."""


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A CURVE key pair (or public key alone) and its metadata, keys as Z85 text."""

    public: str
    secret: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return self.metadata.get("user", "")


def is_z85_key(text: str) -> bool:
    return len(text) == KEY_LENGTH and set(text) <= Z85_CHARS


def format_key_file(key: KeyFile, comment: str = "") -> str:
    """The file's text; a secret key makes it a secret file."""
    lines = [f"#   {line}" for line in comment.splitlines()]
    if key.secret is not None:
        lines.append("#   ZeroMQ CURVE **Secret** Certificate: give it to no one, keep it mode 0600.")
    else:
        lines.append("#   ZeroMQ CURVE **Public** Certificate")
    lines += ["", "metadata"]
    for name, value in sorted(key.metadata.items()):
        if not name.replace("-", "").replace("_", "").isalnum() or '"' in value or "\n" in value:
            raise KeyFileError(f"key metadata {name!r}: names are letters, digits, - and _; values one line "
                               "without quotes")
        lines.append(f'    {name} = "{value}"')
    lines += ["curve", f'    public-key = "{key.public}"']
    if key.secret is not None:
        lines.append(f'    secret-key = "{key.secret}"')
    return "\n".join(lines) + "\n"


def parse_key_file(text: str, where: str) -> KeyFile:
    """A key file's contents; KeyFileError naming `where` and the line when it is not one."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip() if raw.lstrip().startswith("#") else raw.rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(line.strip(), {})
            continue
        name, sep, value = line.strip().partition("=")
        value = value.strip()
        if current is None or not sep or len(value) < 2 or value[0] != '"' or value[-1] != '"':
            raise KeyFileError(f"{where}:{number}: not a key file line: {raw.strip()[:60]!r}",
                               "key files are made by 'rade keys'")
        current[name.strip()] = value[1:-1]
    curve = sections.get("curve", {})
    public, secret = curve.get("public-key", ""), curve.get("secret-key")
    if not is_z85_key(public):
        raise KeyFileError(f"{where}: no public-key of {KEY_LENGTH} Z85 characters", "key files are made by 'rade keys'")
    if secret is not None and not is_z85_key(secret):
        raise KeyFileError(f"{where}: the secret-key is not {KEY_LENGTH} Z85 characters")
    return KeyFile(public, secret, dict(sections.get("metadata", {})))


def read_key_file(path: str | os.PathLike[str], secret: bool = False) -> KeyFile:
    """Read a key file; with `secret`, it must hold the secret key and be readable by its owner only."""
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyFileError(f"{where}: no such key file", "make keys with 'rade keys init' or 'rade keys user'") from None
    except OSError as err:
        raise KeyFileError(f"{where}: cannot be read: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        data = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{where}: too large for a key file")
    key = parse_key_file(data.decode("utf-8", "replace"), where)
    if secret:
        if key.secret is None:
            raise KeyFileError(f"{where}: holds no secret key", "give the .key_secret file")
        if info.st_mode & 0o077:
            raise KeyFileError(f"{where}: a secret key readable by others (mode {info.st_mode & 0o777:o})",
                               f"chmod 600 {where}")
    return key


def write_key_file(path: str | os.PathLike[str], key: KeyFile, owner: tuple[int, int] | None = None,
                   comment: str = "") -> None:
    """Write atomically (temp, then rename); secret files mode 0600, public 0644; `owner` is (uid, gid)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if key.secret is not None else 0o644
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow it
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, format_key_file(key, comment).encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class KeyDir:
    """Where a cluster's keys live (see the module docstring)."""

    path: Path

    @property
    def scheduler_public(self) -> Path:
        return self.path / "scheduler.key"

    @property
    def scheduler_secret(self) -> Path:
        return self.path / "scheduler.key_secret"

    @property
    def agent_secret(self) -> Path:
        return self.path / "agent.key_secret"

    @property
    def agents(self) -> Path:
        return self.path / "agents"

    @property
    def users(self) -> Path:
        return self.path / "users"

    def user_public(self, name: str) -> Path:
        return self.users / f"{name}.key"

    def user_secret(self, name: str) -> Path:
        """Where the dev cluster keeps a user's secret (a real cluster gives it to the user's home)."""
        return self.users / f"{name}.key_secret"

    def has_scheduler_key(self) -> bool:
        return self.scheduler_secret.exists()


def default_key_dir(root: str) -> Path:
    return Path(root, "keys")
