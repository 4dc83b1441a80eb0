"""The auth file: Docker's layout, mode 0600, atomic and shared by concurrent logins."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from engine.errors import RegistryError
from engine.images.auth import Credentials
from engine.images.credentials import DOCKER_HUB_KEY, CredentialStore, registry_host, registry_key


def test_login_is_saved_as_docker_writes_it_in_a_0600_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "auth.json"
    CredentialStore(str(path)).save("127.0.0.1:5000", Credentials("alice", "pa:ss"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved == {"auths": {"127.0.0.1:5000": {"auth": base64.b64encode(b"alice:pa:ss").decode()}}}
    assert CredentialStore(str(path)).get("127.0.0.1:5000") == Credentials("alice", "pa:ss")


def test_logins_to_two_registries_are_both_kept_and_logout_removes_one(tmp_path: Path) -> None:
    store = CredentialStore(str(tmp_path / "auth.json"))
    store.save("a.example:5000", Credentials("u1", "p1"))
    store.save("b.example", Credentials("u2", "p2"))
    assert store.remove("a.example:5000") is True
    assert store.remove("a.example:5000") is False
    assert store.get("a.example:5000") is None
    assert store.get("b.example") == Credentials("u2", "p2")


def test_docker_hub_is_keyed_like_docker_whatever_name_is_used(tmp_path: Path) -> None:
    assert registry_key("docker.io") == registry_key("index.docker.io") == DOCKER_HUB_KEY
    assert registry_key("https://ghcr.io/") == "ghcr.io"
    store = CredentialStore(str(tmp_path / "auth.json"))
    store.save("docker.io", Credentials("u", "p"))
    assert store.get("registry-1.docker.io") == Credentials("u", "p")


def test_other_keys_in_a_docker_config_survive_a_login(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {}, "credsStore": "x", "HttpHeaders": {"A": "b"}}))
    CredentialStore(str(path)).save("r.example", Credentials("u", "p"))
    saved = json.loads(path.read_text())
    assert saved["credsStore"] == "x" and saved["HttpHeaders"] == {"A": "b"} and "r.example" in saved["auths"]


@pytest.mark.parametrize("content", ["{not json", '{"auths": []}', "[1]"])
def test_a_broken_auth_file_is_a_clear_error_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "auth.json"
    path.write_text(content)
    with pytest.raises(RegistryError, match="auth file"):
        CredentialStore(str(path)).get("r.example")


def test_what_a_user_types_for_a_registry_becomes_the_host_a_reference_names() -> None:
    assert registry_host("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    assert registry_host("https://index.docker.io/v1/") == registry_host("index.docker.io") == "docker.io"
    assert registry_host("ghcr.io") == "ghcr.io"
