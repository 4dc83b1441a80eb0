"""The saved registry logins: a JSON file shaped like Docker's config (`{"auths": {REGISTRY: {"auth": ...}}}`).

`auth` is base64 of `user:password`, exactly as `docker login` writes it, so a Docker or Podman auth file
can be read with `--authfile` and ours by them. The file is mode 0600 from its first byte (it holds
passwords), written to a temp file then renamed, under a lock so two logins at once keep both entries.
Docker Hub is keyed `https://index.docker.io/v1/` as Docker keys it; every other registry by `host[:port]`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Iterator

from engine.errors import RegistryError
from engine.filelock import file_lock
from engine.images.auth import Credentials

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY)


def default_auth_file(root: str) -> str:
    """`$RADE_AUTH_FILE` if set, else `ROOT/auth.json`."""
    return os.environ.get("RADE_AUTH_FILE") or os.path.join(root, "auth.json")


def registry_host(registry: str) -> str:
    """The registry as a reference names it (`host[:port]`, Docker Hub as `docker.io`), from what a user
    may type: `127.0.0.1:5000`, `https://ghcr.io/`, `index.docker.io`..."""
    key = registry_key(registry)
    return "docker.io" if key == DOCKER_HUB_KEY else key


def registry_key(registry: str) -> str:
    """The key a registry's entry has in the file: Docker Hub's historical URL, else `host[:port]`."""
    name = registry.strip()
    for prefix in ("https://", "http://"):
        if name.startswith(prefix) and name != DOCKER_HUB_KEY:
            name = name[len(prefix):]
    name = name.rstrip("/")
    if name in _DOCKER_HUB_NAMES or name + "/" == DOCKER_HUB_KEY:
        return DOCKER_HUB_KEY
    return name


class CredentialStore:
    """Read and change one auth file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get(self, registry: str) -> Credentials | None:
        """The saved login for a registry, or None."""
        entry = self._read().get("auths", {}).get(registry_key(registry))
        if not isinstance(entry, dict) or not entry.get("auth"):
            return None
        try:
            user, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, TypeError):
            raise RegistryError(f"{self.path}: the login saved for {registry} is not base64 of user:password",
                                f"run 'rade login {registry}' again") from None
        return Credentials(username=user, password=password)

    def save(self, registry: str, credentials: Credentials) -> None:
        """Save (or replace) the login for a registry."""
        auth = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode("ascii")
        with self._locked():
            config = self._read()
            config.setdefault("auths", {})[registry_key(registry)] = {"auth": auth}
            self._write(config)

    def remove(self, registry: str) -> bool:
        """Forget the login for a registry; False if there was none."""
        with self._locked():
            config = self._read()
            auths = config.get("auths", {})
            if registry_key(registry) not in auths:
                return False
            del auths[registry_key(registry)]
            self._write(config)
            return True

    def _read(self) -> dict:
        try:
            with open(self.path, "rb") as f:
                config = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise RegistryError(f"cannot read the auth file {self.path}: {err}",
                                "fix or remove it, then log in again") from None
        if not isinstance(config, dict) or not isinstance(config.get("auths", {}), dict):
            raise RegistryError(f"the auth file {self.path} is not a JSON object with an 'auths' object")
        return config

    def _write(self, config: dict) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = f"{self.path}.tmp{os.getpid()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(config, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise RegistryError(f"cannot write the auth file {self.path}: {err}") from None
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        directory = os.path.dirname(os.path.abspath(self.path))
        with contextlib.ExitStack() as held:
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
                held.enter_context(file_lock(self.path + ".lock"))
            except OSError as err:
                raise RegistryError(f"cannot lock the auth file {self.path}: {err}") from None
            yield
