"""References are parsed and normalized as Docker does."""

from __future__ import annotations

import pytest

from engine.errors import ImageError
from engine.images.reference import is_image_id_like, parse_reference

HEX = "a" * 64


@pytest.mark.parametrize(("text", "full", "familiar"), [
    ("busybox", "docker.io/library/busybox", "busybox"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox", "busybox"),
    ("index.docker.io/library/busybox:x", "docker.io/library/busybox:x", "busybox:x"),
    ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("ghcr.io/org/sub/app:v1", "ghcr.io/org/sub/app:v1", "ghcr.io/org/sub/app:v1"),
    ("localhost/app", "localhost/app", "localhost/app"),
    ("localhost:5000/app:t", "localhost:5000/app:t", "localhost:5000/app:t"),
    ("127.0.0.1:5000/ns/app", "127.0.0.1:5000/ns/app", "127.0.0.1:5000/ns/app"),
    (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}", f"busybox@sha256:{HEX}"),
    (f"app:v1@sha256:{HEX}", f"docker.io/library/app:v1@sha256:{HEX}", f"app:v1@sha256:{HEX}"),
    ("a.b_c__d-e---f", "docker.io/library/a.b_c__d-e---f", "a.b_c__d-e---f"),
])
def test_references_normalize_like_docker(text: str, full: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


def test_default_tag_is_latest_only_without_tag_or_digest() -> None:
    assert str(parse_reference("busybox").with_default_tag()) == "docker.io/library/busybox:latest"
    assert parse_reference(f"busybox@sha256:{HEX}").with_default_tag().tag is None


def test_port_is_not_mistaken_for_a_tag() -> None:
    ref = parse_reference("registry:5000/app")
    assert (ref.domain, ref.path, ref.tag) == ("registry:5000", "app", None)


@pytest.mark.parametrize(("text", "words"), [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("busybox:", "tag"),
    ("busybox:-x", "tag"),
    ("bu sy", "repository name"),
    ("busybox@sha256:abc", "digest"),
    ("/busybox", "repository name"),
    ("busybox//x", "repository name"),
    (HEX, "image id"),
    ("a" * 300, "longer"),
])
def test_malformed_references_are_refused_with_the_reason(text: str, words: str) -> None:
    with pytest.raises(ImageError, match=words):
        parse_reference(text)


def test_image_ids_are_recognized_with_or_without_algorithm() -> None:
    assert is_image_id_like(HEX) and is_image_id_like("sha256:" + HEX)
    assert not is_image_id_like("busybox") and not is_image_id_like(HEX[:12])
