"""`rade login`/`logout` and authenticated pulls and pushes: htpasswd (Basic) and token server (Bearer) registries."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.images.store import ImageStore
from rade.cli import main

from .conftest import PASSWORD, USER, RegistryServer, running_registry
from .token_server import TokenServer

pytestmark = pytest.mark.slow


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[RegistryServer, TokenServer]]:
    """A registry that takes Bearer tokens from a token server for USER/PASSWORD."""
    work = tmp_path / "token-registry"
    work.mkdir()
    tokens = TokenServer(work, USER, PASSWORD)
    try:
        with running_registry(work, extra=tokens.registry_auth_yaml()) as server:
            yield server, tokens
    finally:
        tokens.close()


def login(root: Path, host: str, password: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["--root", str(root), "login", host, "-u", USER, "--password-stdin"])


def skopeo_push(layout: Path, destination: str) -> None:
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", f"{USER}:{PASSWORD}",
                    f"oci:{layout}:v1", f"docker://{destination}"], check=True, capture_output=True)


@pytest.mark.parametrize("kind", ["basic", "bearer"])
def test_login_with_a_wrong_password_is_one_clear_line_and_saves_nothing(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    server = request.getfixturevalue("auth_registry") if kind == "basic" \
        else request.getfixturevalue("token_registry")[0]
    assert login(tmp_path / "root", server.host, "not-the-password", monkeypatch) == 125
    assert capsys.readouterr().err == (f"rade: error: {server.host} refused the login of user '{USER}' "
                                       f"(check the user name and password: rade login {server.host})\n")
    assert not (tmp_path / "root" / "auth.json").exists()


def test_basic_login_is_saved_0600_and_used_by_pull_until_logout(
        auth_registry: RegistryServer, umoci_layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "root"
    skopeo_push(umoci_layout, f"{auth_registry.host}/private/app:v1")
    assert main(["--root", str(root), "pull", f"{auth_registry.host}/private/app:v1"]) == 125
    assert "requires a login" in capsys.readouterr().err

    assert login(root, auth_registry.host, PASSWORD, monkeypatch) == 0
    assert capsys.readouterr().out == "Login Succeeded\n"
    auth_file = root / "auth.json"
    assert stat.S_IMODE(os.stat(auth_file).st_mode) == 0o600
    assert list(json.loads(auth_file.read_text())["auths"]) == [auth_registry.host]

    assert main(["--root", str(root), "pull", f"{auth_registry.host}/private/app:v1"]) == 0
    assert main(["--root", str(root), "push", f"{auth_registry.host}/private/app:v1",
                 f"{auth_registry.host}/private/copy:v1"]) == 0
    assert main(["--root", str(root), "logout", auth_registry.host]) == 0
    assert json.loads(auth_file.read_text())["auths"] == {}
    assert main(["--root", str(root), "pull", f"{auth_registry.host}/private/copy:v1"]) == 125


def test_bearer_tokens_are_scoped_per_repository_and_anonymous_pull_gets_public_only(
        token_registry: tuple[RegistryServer, TokenServer], umoci_layout: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    server, tokens = token_registry
    skopeo_push(umoci_layout, f"{server.host}/public/app:v1")
    skopeo_push(umoci_layout, f"{server.host}/private/app:v1")

    anonymous = tmp_path / "anonymous"
    assert main(["--root", str(anonymous), "pull", f"{server.host}/public/app:v1"]) == 0
    assert main(["--root", str(anonymous), "pull", f"{server.host}/private/app:v1"]) == 125
    assert f"{server.host} requires a login" in capsys.readouterr().err
    assert ("", ["repository:public/app:pull"]) in tokens.issued

    root = tmp_path / "root"
    assert login(root, server.host, PASSWORD, monkeypatch) == 0
    assert main(["--root", str(root), "pull", f"{server.host}/private/app:v1"]) == 0
    assert main(["--root", str(root), "push", f"{server.host}/private/app:v1", f"{server.host}/private/b:v2"]) == 0
    # The blobs were mounted from private/app: the challenge asked for pull there too, and got it.
    assert (USER, ["repository:private/b:pull,push", "repository:private/app:pull"]) in tokens.issued
    assert "2 mounted" in capsys.readouterr().out
    pulled = ImageStore(str(root)).resolve(f"{server.host}/private/app:v1")
    assert pulled.id == ImageStore(str(anonymous)).resolve(f"{server.host}/public/app:v1").id
