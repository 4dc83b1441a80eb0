"""What a registry's manifest is, and which entry of a manifest list or OCI index fits this machine.

A registry serves four kinds of manifest rade reads: Docker schema 2 and OCI image manifests (one image),
Docker manifest lists and OCI indexes (one image per platform). The kind is the response's Content-Type,
falling back to the document's own `mediaType` field and then to its shape: umoci and other OCI tools
write manifests without a `mediaType` field. Platforms use Go's names (`amd64`, `arm64`), so the machine's
`platform.machine()` is mapped to them. Pure data in, data out: no I/O.
"""

from __future__ import annotations

import json
import platform as host_platform
from dataclasses import dataclass

from engine.errors import RegistryError
from engine.images.content import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
MANIFEST_LISTS = (OCI_INDEX, DOCKER_MANIFEST_LIST)
# Sent as Accept on every manifest GET: without it a registry may downgrade to the old schema 1.
ACCEPTED_MANIFESTS = (*IMAGE_MANIFESTS, *MANIFEST_LISTS)

# platform.machine() names to the Go GOARCH (and variant) names that image platforms use.
_GO_ARCH = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "i386": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
}


@dataclass(frozen=True, slots=True)
class Platform:
    """An image platform: OS, Go architecture name, and optional variant (`linux/arm/v7`)."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One entry of a manifest list or index: the manifest's digest, size, media type and platform."""

    digest: str
    size: int
    media_type: str
    platform: Platform | None


def host_platform_of_machine(machine: str | None = None) -> Platform:
    """This machine's platform in image terms (linux/amd64 on x86_64)."""
    name = (machine or host_platform.machine()).lower()
    architecture, variant = _GO_ARCH.get(name, (name, ""))
    return Platform(os="linux", architecture=architecture, variant=variant)


def parse_platform(text: str) -> Platform:
    """`os/arch[/variant]` as given on the command line."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise RegistryError(f"{text!r} is not a platform", "use os/arch or os/arch/variant, e.g. linux/amd64")
    return Platform(*parts)


def manifest_kind(content_type: str | None, body: bytes) -> tuple[str, dict]:
    """The media type of a fetched manifest, and the parsed document."""
    try:
        document = json.loads(body)
    except ValueError:
        raise RegistryError("the registry sent a manifest that is not JSON") from None
    if not isinstance(document, dict):
        raise RegistryError("the registry sent a manifest that is not a JSON object")
    declared = document.get("mediaType")
    header = (content_type or "").split(";")[0].strip()
    for candidate in (declared, header):
        if candidate in ACCEPTED_MANIFESTS:
            return candidate, document
    if document.get("schemaVersion") == 1 or header.startswith("application/vnd.docker.distribution.manifest.v1"):
        raise RegistryError("the registry only offers this image as a Docker schema 1 manifest",
                            "schema 1 is deprecated; push the image again with a current tool")
    # No usable type anywhere: judge by shape (an OCI document without mediaType, served as JSON).
    if isinstance(document.get("manifests"), list):
        return OCI_INDEX, document
    if isinstance(document.get("layers"), list) and isinstance(document.get("config"), dict):
        return OCI_MANIFEST, document
    raise RegistryError(f"the registry sent a manifest of a kind rade does not know ({header or declared!r})")


def index_entries(document: dict) -> list[ManifestEntry]:
    """The entries of a manifest list or OCI index."""
    entries: list[ManifestEntry] = []
    for raw in document.get("manifests") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("digest"), str):
            raise RegistryError("the registry's manifest list has an entry without a digest")
        plat = raw.get("platform")
        entries.append(ManifestEntry(
            digest=raw["digest"],
            size=int(raw.get("size") or 0),
            media_type=str(raw.get("mediaType") or ""),
            platform=Platform(str(plat.get("os", "")), str(plat.get("architecture", "")),
                              str(plat.get("variant", "") or "")) if isinstance(plat, dict) else None,
        ))
    return entries


def pick_platform(entries: list[ManifestEntry], wanted: Platform) -> ManifestEntry:
    """The entry for `wanted`: an exact variant match first, then the same OS and architecture.

    Entries with no platform (attestations, or a single-platform index from an OCI layout) are taken only
    when nothing names a platform at all.
    """
    same_arch = [e for e in entries if e.platform and e.platform.os == wanted.os
                 and e.platform.architecture == wanted.architecture]
    for entry in same_arch:
        if entry.platform and entry.platform.variant == wanted.variant:
            return entry
    if same_arch:
        return same_arch[0]
    if entries and all(e.platform is None for e in entries):
        return entries[0]
    offered = ", ".join(sorted({str(e.platform) for e in entries if e.platform})) or "none"
    raise RegistryError(f"the image has no variant for {wanted} (it offers: {offered})",
                        "pull on a machine of one of those platforms, or pass --platform")
