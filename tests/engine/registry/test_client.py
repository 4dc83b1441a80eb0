"""The distribution API client against a real registry: uploads, ranged downloads, auth answers, errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import RegistryError
from engine.images.auth import Credentials
from engine.images.manifest_list import ACCEPTED_MANIFESTS, OCI_MANIFEST
from engine.images.registry import Endpoint, RegistryClient, endpoint_for

from .conftest import PASSWORD, USER, RegistryServer, free_port, running_registry


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload(client: RegistryClient, repo: str, data: bytes, chunk: int) -> str:
    url = client.start_upload(repo)
    assert url is not None
    offset = 0
    while len(data) - offset > chunk:
        url = client.upload_chunk(repo, url, io.BytesIO(data[offset:offset + chunk]), offset, chunk)
        offset += chunk
    rest = data[offset:]
    client.finish_upload(repo, url, digest(data), io.BytesIO(rest), len(rest))
    return digest(data)


def test_loopback_registries_use_http_and_others_https() -> None:
    assert endpoint_for("127.0.0.1:5000").scheme == "http"
    assert endpoint_for("localhost:5000").scheme == "http"
    assert endpoint_for("registry.example.org").scheme == "https"
    assert endpoint_for("docker.io").host == "registry-1.docker.io"


def test_a_chunked_upload_is_found_by_head_and_read_back_from_an_offset(registry: RegistryServer) -> None:
    data = os.urandom(2_500_000)
    with RegistryClient(endpoint_for(registry.host)) as client:
        blob = upload(client, "test/chunks", data, chunk=1_000_000)
        assert client.blob_size("test/chunks", blob) == len(data)
        assert client.blob_size("test/chunks", digest(b"other")) is None
        resp = client.open_blob("test/chunks", blob, offset=1234)
        assert resp.raw is not None
        assert resp.status == 206 and resp.raw.read() == data[1234:]
        resp.close(reusable=True)
    assert [m for m, _ in client.requests].count("PATCH") == 2


def test_a_manifest_round_trips_with_its_content_type_and_digest(registry: RegistryServer) -> None:
    with RegistryClient(endpoint_for(registry.host)) as client:
        config = upload(client, "test/m", b"{}", chunk=1 << 20)
        manifest = json.dumps({"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                                              "digest": config, "size": 2}, "layers": []}).encode()
        assert client.put_manifest("test/m", "v1", manifest, OCI_MANIFEST) == digest(manifest)
        body, content_type, got = client.get_manifest("test/m", "v1", ACCEPTED_MANIFESTS)
        assert (body, content_type, got) == (manifest, OCI_MANIFEST, digest(manifest))
        assert client.get_manifest("test/m", digest(manifest), ACCEPTED_MANIFESTS)[0] == manifest


def test_an_unknown_image_is_a_clear_error(registry: RegistryServer) -> None:
    with RegistryClient(endpoint_for(registry.host)) as client, \
            pytest.raises(RegistryError, match=r"has no test/absent:v9 \(no such"):
        client.get_manifest("test/absent", "v9", ACCEPTED_MANIFESTS)


def test_basic_auth_accepts_the_right_password(auth_registry: RegistryServer) -> None:
    with RegistryClient(endpoint_for(auth_registry.host), Credentials(USER, PASSWORD)) as client:
        client.ping()
        upload(client, "test/private", b"secret layer", chunk=1 << 20)


def test_a_wrong_password_is_refused_naming_the_user(auth_registry: RegistryServer) -> None:
    with RegistryClient(endpoint_for(auth_registry.host), Credentials(USER, "wrong")) as client, \
            pytest.raises(RegistryError, match=f"refused the login of user '{USER}'"):
        client.ping()


def test_no_login_for_a_registry_that_wants_one_says_to_log_in(auth_registry: RegistryServer) -> None:
    with RegistryClient(endpoint_for(auth_registry.host)) as client, \
            pytest.raises(RegistryError, match="requires a login") as caught:
        client.blob_size("test/private", digest(b"x"))
    assert caught.value.hint == f"run: rade login {auth_registry.host}"


def test_a_registry_that_is_not_there_is_a_clear_error() -> None:
    with RegistryClient(endpoint_for(f"127.0.0.1:{free_port()}")) as client, \
            pytest.raises(RegistryError, match="cannot reach the registry"):
        client.ping()


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry serving HTTPS with a self-signed certificate."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    work = tmp_path / "tls-registry"
    work.mkdir()
    with running_registry(work, tls=(cert, key)) as server:
        yield server


def test_an_unverifiable_certificate_is_refused_unless_verification_is_off(tls_registry: RegistryServer) -> None:
    verified = Endpoint(tls_registry.host, "https", tls_registry.host, tls_verify=True)
    with RegistryClient(verified) as client, pytest.raises(RegistryError, match="TLS with") as caught:
        client.ping()
    assert caught.value.hint is not None and "--tls-verify=false" in caught.value.hint
    unverified = Endpoint(tls_registry.host, "https", tls_registry.host, tls_verify=False)
    with RegistryClient(unverified) as client:
        client.ping()
        assert upload(client, "test/tls", b"over https", chunk=1 << 20) == digest(b"over https")
