"""Manifest kinds and platform choice: what a registry sends, and which entry of a list this machine takes."""

from __future__ import annotations

import json

import pytest

from engine.errors import RegistryError
from engine.images.manifest_list import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Platform,
    host_platform_of_machine,
    index_entries,
    manifest_kind,
    parse_platform,
    pick_platform,
)

D = "sha256:" + "a" * 64


def entry(os_: str, arch: str, variant: str = "", n: int = 1) -> dict:
    plat = {"os": os_, "architecture": arch} | ({"variant": variant} if variant else {})
    return {"mediaType": OCI_MANIFEST, "digest": "sha256:" + str(n) * 64, "size": 10, "platform": plat}


@pytest.mark.parametrize(("machine", "expected"), [
    ("x86_64", "linux/amd64"), ("aarch64", "linux/arm64/v8"), ("armv7l", "linux/arm/v7"), ("riscv64", "linux/riscv64"),
])
def test_machine_names_map_to_go_platform_names(machine: str, expected: str) -> None:
    assert str(host_platform_of_machine(machine)) == expected


def test_an_oci_manifest_without_media_type_takes_it_from_the_content_type() -> None:
    body = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
    assert manifest_kind(OCI_MANIFEST, body)[0] == OCI_MANIFEST
    assert manifest_kind("application/json", body)[0] == OCI_MANIFEST
    assert manifest_kind(f"{DOCKER_MANIFEST}; charset=utf-8", body)[0] == DOCKER_MANIFEST


def test_a_declared_media_type_wins_over_a_generic_header() -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": []}).encode()
    assert manifest_kind("application/octet-stream", body)[0] == DOCKER_MANIFEST_LIST


def test_schema1_manifests_are_refused_with_a_hint() -> None:
    with pytest.raises(RegistryError, match="schema 1"):
        manifest_kind("application/vnd.docker.distribution.manifest.v1+prettyjws", b'{"schemaVersion": 1}')


def test_this_machines_platform_is_picked_from_a_multi_arch_index() -> None:
    doc = {"mediaType": OCI_INDEX, "manifests": [entry("linux", "arm64", "v8", 1), entry("linux", "amd64", n=2),
                                                 entry("windows", "amd64", n=3)]}
    chosen = pick_platform(index_entries(doc), Platform("linux", "amd64"))
    assert chosen.digest == "sha256:" + "2" * 64


def test_the_exact_variant_is_preferred_and_any_variant_of_the_architecture_is_next() -> None:
    entries = index_entries({"manifests": [entry("linux", "arm", "v6", 1), entry("linux", "arm", "v7", 2)]})
    assert pick_platform(entries, Platform("linux", "arm", "v7")).digest == "sha256:" + "2" * 64
    assert pick_platform(entries, Platform("linux", "arm", "v5")).digest == "sha256:" + "1" * 64


def test_a_list_without_this_platform_says_which_it_offers() -> None:
    entries = index_entries({"manifests": [entry("linux", "arm64", "v8"), entry("linux", "s390x", n=2)]})
    with pytest.raises(RegistryError, match=r"linux/amd64.*linux/arm64/v8, linux/s390x"):
        pick_platform(entries, Platform("linux", "amd64"))


def test_an_index_whose_entries_name_no_platform_gives_its_first_entry() -> None:
    entries = index_entries({"manifests": [{"digest": D, "size": 3, "mediaType": OCI_MANIFEST}]})
    assert pick_platform(entries, Platform("linux", "amd64")).digest == D


def test_platform_text_is_os_slash_arch_with_optional_variant() -> None:
    assert parse_platform("linux/arm64/v8") == Platform("linux", "arm64", "v8")
    with pytest.raises(RegistryError, match="not a platform"):
        parse_platform("amd64")
