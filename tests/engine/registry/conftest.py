"""A real registry for the tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 at a free port.

Each fixture starts its own registry process with its storage in a temp dir, waits until /v2/ answers,
and always stops that process by its PID. `auth_registry` adds htpasswd (Basic) auth; the bcrypt line is
made with the C library's crypt(3) (libxcrypt speaks `$2b$`), so no extra tool is needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "alice", "s3cret-pass"


@dataclass
class RegistryServer:
    """A running registry: its `host:port`, storage root and log file."""

    host: str
    storage: Path
    log: Path
    pid: int

    def blob_data_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes."""
        hexdigits = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigits[:2] / hexdigits / "data"

    def access_log(self) -> list[str]:
        """The registry's HTTP access log lines (method and path), for counting requests."""
        return [line for line in self.log.read_text(errors="replace").splitlines() if '"' in line and "HTTP/1" in line]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bcrypt_line(user: str, password: str) -> str:
    """An htpasswd line with a bcrypt hash, from crypt(3) of the C library."""
    libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    libcrypt.crypt_gensalt.restype = ctypes.c_char_p
    libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = libcrypt.crypt_gensalt(b"$2b$", 5, None, 0)
    hashed = libcrypt.crypt(password.encode(), salt)
    assert hashed and hashed.startswith(b"$2b$"), "crypt(3) here cannot make bcrypt hashes"
    return f"{user}:{hashed.decode()}\n"


def _wait_ready(host: str, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode} before it was ready")
        conn = http.client.HTTPConnection(host, timeout=1)
        try:
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.02)
        finally:
            conn.close()
    raise RuntimeError("docker-registry did not answer on /v2/ within 10 s")


@contextlib.contextmanager
def running_registry(workdir: Path, auth: str | None = None, extra: str = "",
                     tls: tuple[Path, Path] | None = None) -> Iterator[RegistryServer]:
    """Start a registry in `workdir` (auth None or 'htpasswd'; `tls` a certificate and key to serve HTTPS
    with); stop it by PID when done."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    host = f"127.0.0.1:{free_port()}"
    storage, log = workdir / "storage", workdir / "registry.log"
    storage.mkdir()
    auth_yaml = ""
    if auth == "htpasswd":
        (workdir / "htpasswd").write_text(bcrypt_line(USER, PASSWORD))
        auth_yaml = f"auth:\n  htpasswd:\n    realm: rade-test\n    path: {workdir / 'htpasswd'}\n"
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  formatter: text\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {host}\n"
        + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
        + auth_yaml + extra
    )
    with open(log, "wb") as log_file:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT, close_fds=True,
                                start_new_session=True)
    try:
        _wait_ready(host, proc, time.monotonic() + 10)
        yield RegistryServer(host=host, storage=storage, log=log, pid=proc.pid)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """An open registry (no auth)."""
    work = tmp_path / "registry"
    work.mkdir()
    with running_registry(work) as server:
        yield server


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry with htpasswd (Basic) auth for USER/PASSWORD."""
    work = tmp_path / "auth-registry"
    work.mkdir()
    with running_registry(work, auth="htpasswd") as server:
        yield server


@pytest.fixture
def umoci_layout(tmp_path: Path) -> Path:
    """An OCI image layout made by umoci (tag `v1`), with one layer holding a few files."""
    if not shutil.which("umoci"):
        pytest.skip("umoci is not installed (Debian package umoci)")
    layout = tmp_path / "oci"
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:v1"], check=True)
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle)], check=True,
                   capture_output=True)
    rootfs = bundle / "rootfs"
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc/hello.txt").write_text("hello from umoci\n")
    (rootfs / "bin").mkdir(exist_ok=True)
    (rootfs / "bin/data").write_bytes(os.urandom(200_000))
    subprocess.run(["umoci", "repack", "--image", f"{layout}:v1", str(bundle)], check=True, capture_output=True)
    subprocess.run(["umoci", "config", "--image", f"{layout}:v1", "--config.cmd", "/bin/sh",
                    "--config.env", "PATH=/bin"], check=True)
    shutil.rmtree(bundle, ignore_errors=True)
    return layout
