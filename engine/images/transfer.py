"""Pull and push: moving an image between the store and a registry, blob by blob, verified on the way in.

A pull reads the manifest (for a list or an index, the entry of this machine's platform), fetches the
config and every layer the store lacks, several at once, each streamed straight into the store, which
checks its digest and size before the blob becomes visible, so a tampered or truncated blob leaves
nothing behind. A dropped connection is resumed with a Range request where the registry allows it (else
the blob is fetched again). A push HEADs every blob and uploads only the missing ones (in one PUT, or in
PATCH chunks when they are large), then PUTs the manifest unchanged: an OCI image stays OCI, a Docker
one stays Docker, and the digest the registry records is the digest the store has.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from engine.errors import ImageError, RegistryError
from engine.images import manifest_list
from engine.images.blob_streams import ResumingBlobStream, TransferFailed, UploadWindow
from engine.images.content import Descriptor
from engine.images.credentials import CredentialStore
from engine.images.manifest import Manifest, parse_config, parse_manifest
from engine.images.manifest_list import Platform
from engine.images.progress import NoProgress, TransferProgress
from engine.images.reference import Reference, parse_reference
from engine.images.registry import RegistryClient, RegistryUnreachable, endpoint_for

log = logging.getLogger(__name__)

# Parallel blob transfers: enough to hide one stream's latency without starving the unpacking.
_PARALLEL = 4
# Layers unpacked at once while the rest download: one per core, the downloads mostly wait on sockets.
_UNPACKERS = max(1, min(4, os.cpu_count() or 1))
_BLOB_ATTEMPTS = 4
# Blobs up to this size go in one PUT; bigger ones in PATCH chunks of this size.
DEFAULT_CHUNK = 64 << 20


class ImageSink(Protocol):
    """What a transfer needs of the image store."""

    def has_blob(self, digest: str) -> bool: ...

    def blob_path(self, digest: str) -> str: ...

    def ingest_blob(self, stream: BinaryIO, expected_digest: str | None = None,
                    expected_size: int | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Transfer:
    """What a pull or push did: the manifest digest and media type; blobs moved, already there, mounted."""

    reference: str
    digest: str
    media_type: str
    manifest: bytes
    moved: tuple[str, ...]
    present: tuple[str, ...]
    mounted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How to reach registries: the saved logins, TLS verification, and the platform to pull."""

    credentials: CredentialStore | None = None
    tls_verify: bool = True
    platform: Platform | None = None
    chunk_size: int = DEFAULT_CHUNK


def client_for(ref: Reference, options: RegistryOptions) -> RegistryClient:
    """A client for the registry a reference names, with its saved login if there is one."""
    login = options.credentials.get(ref.domain) if options.credentials else None
    return RegistryClient(endpoint_for(ref.domain, options.tls_verify), login)


def fetch(sink: ImageSink, reference: str, options: RegistryOptions, progress: TransferProgress | None = None,
          on_layer: Callable[[Manifest, int], None] | None = None) -> Transfer:
    """Fetch an image's manifest and every blob the store lacks; the caller registers the image.

    The config comes first, then the layers several at once; `on_layer(manifest, i)` is called (from a
    download thread) as soon as layer i is in the store, so a caller can start unpacking it while the
    others still download.
    """
    ref = parse_reference(reference).with_default_tag()
    progress = progress or NoProgress()
    with client_for(ref, options) as client:
        body, media_type, digest = _image_manifest(client, ref, options.platform)
        manifest = parse_manifest(body, media_type)
        moved: list[str] = []
        present: list[str] = []
        lock = threading.Lock()

        def one(desc: Descriptor) -> None:
            if sink.has_blob(desc.digest):
                progress.finish(desc.digest, "Already exists")
                with lock:
                    present.append(desc.digest)
            else:
                _download(client, sink, ref, desc, progress)
                with lock:
                    moved.append(desc.digest)

        def layer(desc: Descriptor) -> None:
            one(desc)
            if on_layer is not None:
                on_layer(manifest, manifest.layers.index(desc))

        one(manifest.config)
        _run_all(layer, _unique(list(manifest.layers)))
    return Transfer(str(ref), digest, manifest.media_type, body, tuple(moved), tuple(present))


def _image_manifest(client: RegistryClient, ref: Reference, wanted: Platform | None) -> tuple[bytes, str, str]:
    """The single-platform manifest a reference leads to: bytes, media type and digest."""
    body, content_type, digest = client.get_manifest(ref.path, ref.digest or ref.tag or "latest",
                                                     manifest_list.ACCEPTED_MANIFESTS)
    kind, document = manifest_list.manifest_kind(content_type, body)
    if kind in manifest_list.MANIFEST_LISTS:
        platform = wanted or manifest_list.host_platform_of_machine()
        entry = manifest_list.pick_platform(manifest_list.index_entries(document), platform)
        log.debug("%s: %s is %s for %s", ref, kind, entry.digest, platform)
        body, content_type, digest = client.get_manifest(ref.path, entry.digest, manifest_list.ACCEPTED_MANIFESTS)
        kind, document = manifest_list.manifest_kind(content_type or entry.media_type, body)
        if kind in manifest_list.MANIFEST_LISTS:
            raise RegistryError(f"{ref}: the manifest list for {platform} points at another list",
                                "nested indexes are not supported")
    return body, kind, digest


def _download(client: RegistryClient, sink: ImageSink, ref: Reference, desc: Descriptor,
              progress: TransferProgress) -> None:
    """Stream one blob into the store; start over (a whole new ingest) when resuming was not enough."""
    for attempt in range(1, _BLOB_ATTEMPTS + 1):
        progress.begin(desc.digest, desc.size, "Downloading")
        stream = ResumingBlobStream(client, ref.path, desc, progress)
        try:
            sink.ingest_blob(stream, expected_digest=desc.digest, expected_size=desc.size)
            progress.finish(desc.digest, "Download complete")
            return
        except TransferFailed as err:
            if attempt == _BLOB_ATTEMPTS:
                raise RegistryError(f"downloading blob {desc.digest} of {ref.familiar()} from {ref.domain} "
                                    f"failed {attempt} times: {err}", "check the network and try again") from None
            log.debug("%s: attempt %d failed (%s); again", desc.digest, attempt, err)
        except RegistryError:
            raise
        except ImageError as err:
            # The store refused what arrived (wrong digest or size): the registry serves bad content.
            progress.finish(desc.digest, "Refused")
            raise RegistryError(f"{ref.domain} sent a bad blob for {ref.familiar()}: {err.message}; "
                                "nothing of it was stored",
                                "the registry's copy may be corrupt or tampered with; push the image again") from None
        finally:
            stream.close()


def push(sink: ImageSink, manifest: bytes, media_type: str, destination: str, options: RegistryOptions,
         progress: TransferProgress | None = None, mount_from: tuple[str, ...] = ()) -> Transfer:
    """Upload an image's blobs the registry lacks, then its manifest, under `destination`'s tag.

    `mount_from` names other repositories of the same registry the image came from: a missing blob is
    first asked for as a cross-repository mount from the first of them (no bytes sent); a registry that
    declines answers with an ordinary upload session, which is then used.
    """
    ref = parse_reference(destination).with_default_tag()
    if ref.digest and not ref.tag:
        raise RegistryError(f"cannot push to {destination}: a push needs a tag, not a digest",
                            "name the destination as registry/name:tag")
    parsed = parse_manifest(manifest, media_type)
    progress = progress or NoProgress()
    moved: list[str] = []
    present: list[str] = []
    mounted: list[str] = []
    lock = threading.Lock()
    source = next((repo for repo in mount_from if repo != ref.path), None)
    with client_for(ref, options) as client:

        def one(desc: Descriptor) -> None:
            if client.blob_size(ref.path, desc.digest, push=True) is not None:
                progress.finish(desc.digest, "Layer already exists")
                with lock:
                    present.append(desc.digest)
                return
            url = _start_upload(client, ref.path, desc.digest, source)
            if url is None:
                progress.finish(desc.digest, f"Mounted from {source}")
                with lock:
                    mounted.append(desc.digest)
                return
            _upload(client, sink, ref, desc, url, options.chunk_size, progress)
            with lock:
                moved.append(desc.digest)

        # The config last: a registry may only accept it once the layers it describes are there.
        _run_all(one, _unique(list(parsed.layers)))
        one(parsed.config)
        digest = client.put_manifest(ref.path, ref.tag or "latest", manifest, parsed.media_type)
    return Transfer(str(ref), digest, parsed.media_type, manifest, tuple(moved), tuple(present), tuple(mounted))


def _start_upload(client: RegistryClient, repository: str, digest: str, source: str | None) -> str | None:
    """An upload session for a blob, or None when it was mounted from `source` instead."""
    if source is not None:
        try:
            return client.start_upload(repository, mount=(digest, source))
        except RegistryUnreachable:
            raise
        except RegistryError as err:
            log.debug("mounting %s from %s refused (%s): uploading it", digest, source, err)
    url = client.start_upload(repository)
    assert url is not None
    return url


def _upload(client: RegistryClient, sink: ImageSink, ref: Reference, desc: Descriptor, url: str, chunk: int,
            progress: TransferProgress) -> None:
    """Send one blob into the upload session at `url`: in one PUT, or PATCH chunks then a closing PUT."""
    path = sink.blob_path(desc.digest)
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed below, after the upload's last request
    except OSError as err:
        raise RegistryError(f"cannot read blob {desc.digest} of the local image: {err}",
                            "the store may be damaged; pull or load the image again") from None
    progress.begin(desc.digest, desc.size, "Pushing")
    with file:
        offset = 0
        while desc.size - offset > chunk:
            url = client.upload_chunk(ref.path, url, UploadWindow(file, offset, chunk, desc.digest, progress),
                                      offset, chunk)
            offset += chunk
        rest = desc.size - offset
        client.finish_upload(ref.path, url, desc.digest, UploadWindow(file, offset, rest, desc.digest, progress), rest)
    progress.finish(desc.digest, "Pushed")


def _unique(blobs: list[Descriptor]) -> list[Descriptor]:
    """Each digest once: an image may list the same (empty) layer several times."""
    seen: set[str] = set()
    out = []
    for desc in blobs:
        if desc.digest not in seen:
            seen.add(desc.digest)
            out.append(desc)
    return out


def _run_all(work: Callable[[Descriptor], None], blobs: list[Descriptor]) -> None:
    """Run `work` for every blob, a few at a time. On the first failure the blobs not yet started are
    dropped; the ones under way finish (a thread cannot be interrupted), then the failure is raised."""
    if len(blobs) <= 1:
        for desc in blobs:
            work(desc)
        return
    with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(blobs)), thread_name_prefix="rade-blob") as pool:
        futures = [pool.submit(work, desc) for desc in blobs]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            future.cancel()
    for future in futures:
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]


class ImageStoreLike(ImageSink, Protocol):
    """The store as a pull registers, and a push reads, whole images."""

    def register_image(self, manifest: bytes, media_type: str | None = None) -> Any: ...

    def tag(self, image: Any, reference: str) -> None: ...

    def get(self, image_id: str) -> Any: ...

    def prepare_layer(self, diff_id: str, blob: Descriptor, label: str) -> None: ...

    def resolve(self, reference_or_id: str) -> Any: ...


def pull(store: ImageStoreLike, reference: str, options: RegistryOptions,
         progress: TransferProgress | None = None) -> Any:
    """Pull an image into the store (unpacking its layers), tag it with the reference and record its
    repository digest (`name@sha256:...`, as RepoDigests); return the Image.

    Each layer is unpacked as soon as it has arrived, while the others download; registering the image
    then finds them done.
    """
    progress = progress or NoProgress()
    unpacking: list[Future] = []
    diff_ids: list[str] = []
    lock = threading.Lock()

    def extract(diff_id: str, desc: Descriptor, label: str) -> None:
        progress.finish(desc.digest, "Extracting")
        store.prepare_layer(diff_id, desc, label)
        progress.finish(desc.digest, "Pull complete")

    with ThreadPoolExecutor(max_workers=_UNPACKERS, thread_name_prefix="rade-unpack") as unpackers:

        def unpack(manifest: Manifest, i: int) -> None:
            with lock:
                if not diff_ids:
                    with open(store.blob_path(manifest.config.digest), "rb") as src:
                        diff_ids.extend(parse_config(src.read()).diff_ids)
            if i < len(diff_ids):  # a count mismatch is for register_image to report
                desc = manifest.layers[i]
                label = f"layer {i + 1}/{len(manifest.layers)} ({desc.digest.split(':')[1][:12]})"
                unpacking.append(unpackers.submit(extract, diff_ids[i], desc, label))

        try:
            transfer = fetch(store, reference, options, progress, on_layer=unpack)
        except BaseException:
            for job in unpacking:
                job.cancel()
            raise
        for job in unpacking:
            job.result()
    image = store.register_image(transfer.manifest, transfer.media_type)
    ref = parse_reference(transfer.reference)
    if ref.tag:
        store.tag(image, str(Reference(ref.domain, ref.path, ref.tag)))
    store.tag(image, f"{ref.name}@{transfer.digest}")
    return store.get(image.id)


def push_image(store: ImageStoreLike, image: str, destination: str | None, options: RegistryOptions,
               progress: TransferProgress | None = None) -> Transfer:
    """Push a local image to `destination`, or to the registry and name it is tagged with; blobs are
    mounted from a repository of the same registry the image was pulled from when the registry allows."""
    found = store.resolve(image)
    target = parse_reference(destination or image)
    sources = []
    for known in found.repo_digests:
        origin = parse_reference(known)
        if origin.domain == target.domain and origin.path != target.path:
            sources.append(origin.path)
    return push(store, found.manifest, found.manifest_media_type, destination or image, options, progress,
                mount_from=tuple(sources))
