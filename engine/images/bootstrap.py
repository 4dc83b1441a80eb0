"""Base images without a registry: busybox from the host's static busybox, Debian from debootstrap.

`busybox`: Debian's busybox-static binary, a hard link per applet at the path `busybox --list-full` gives,
/etc/passwd and /etc/group, Cmd ["sh"] and a PATH. Its timestamps come from the binary, so the same
busybox always makes the same image id. `debian:SUITE`: `debootstrap --variant=minbase` from the Debian
mirror this machine's apt uses, with apt's caches and /dev emptied; the rootfs tar is kept under
ROOT/images/cache so a second bootstrap skips debootstrap (and, while its layer is stored, does no I/O
beyond a few small files). Both end in ingest_blob + register_image like every other image.
"""

from __future__ import annotations

import datetime
import glob
import io
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile

from engine.errors import ImageError
from engine.filelock import file_lock
from engine.images.atomic import read_json, write_json_atomic
from engine.images.content import OCI_CONFIG, OCI_LAYER, Descriptor, digest_of
from engine.images.image import Image
from engine.images.layers import remove_tree
from engine.images.manifest import build_manifest, canonical_json, host_architecture, new_config
from engine.images.store import ImageStore

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"
_SKELETON = (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755), ("proc", 0o555), ("root", 0o700),
             ("sbin", 0o755), ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755), ("usr/bin", 0o755),
             ("usr/sbin", 0o755), ("var", 0o755), ("var/tmp", 0o1777))
_PT_INTERP = 3


def _rfc3339(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _register_one_layer(store: ImageStore, layer: Descriptor, created: str, created_by: str,
                        runtime: dict[str, object], reference: str) -> Image:
    history = [{"created": created, "created_by": created_by}]
    config = canonical_json(new_config([layer.digest], created, history, runtime))
    config_desc = store.blobs.ingest_bytes(config, OCI_CONFIG)
    image = store.register_image(build_manifest(config_desc, [Descriptor(OCI_LAYER, layer.digest, layer.size)]))
    store.tag(image, reference)
    return store.get(image.id)


# -- busybox ----------------------------------------------------------------------------------------------


def is_static_elf(path: str) -> bool:
    """Whether an ELF executable has no program interpreter (is statically linked)."""
    with open(path, "rb") as src:
        header = src.read(64)
        if header[:4] != b"\x7fELF":
            return False
        is64, little = header[4] == 2, header[5] == 1
        end = "<" if little else ">"
        if is64:
            phoff, = struct.unpack_from(end + "Q", header, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", header, 54)
        else:
            phoff, = struct.unpack_from(end + "I", header, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", header, 42)
        for i in range(phnum):
            src.seek(phoff + i * phentsize)
            kind, = struct.unpack(end + "I", src.read(4))
            if kind == _PT_INTERP:
                return False
    return True


def find_static_busybox() -> str:
    """The host's static busybox binary (Debian's busybox-static installs /bin/busybox)."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox") or ""):
        if candidate and os.path.isfile(candidate) and is_static_elf(candidate):
            return candidate
    raise ImageError("no statically linked busybox on this machine",
                     "install Debian's busybox-static (apt-get install busybox-static)")


def busybox_layer(busybox: str) -> bytes:
    """The busybox root filesystem as an uncompressed tar (deterministic for a given binary)."""
    listing = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise ImageError(f"{busybox} --list-full failed: {listing.stderr.strip()}")
    applets = sorted({line.strip().lstrip("/") for line in listing.stdout.splitlines() if line.strip()})
    mtime = int(os.stat(busybox).st_mtime)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes, mode: int, data: bytes | None = None, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, mtime, link
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        for name, mode in _SKELETON:
            add(name, tarfile.DIRTYPE, mode)
        with open(busybox, "rb") as src:
            add("bin/busybox", tarfile.REGTYPE, 0o755, src.read())
        for applet in applets:
            if applet != "bin/busybox" and ".." not in applet.split("/"):
                for parent in _parents(applet):
                    if parent not in dict(_SKELETON):
                        add(parent, tarfile.DIRTYPE, 0o755)
                add(applet, tarfile.LNKTYPE, 0o755, link="bin/busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, _PASSWD)
        add("etc/group", tarfile.REGTYPE, 0o644, _GROUP)
    return buf.getvalue()


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def bootstrap_busybox(store: ImageStore, reference: str) -> Image:
    """A busybox image from the host's static busybox, tagged `reference`."""
    busybox = find_static_busybox()
    layer = busybox_layer(busybox)
    desc = store.blobs.ingest_bytes(layer, OCI_LAYER, expected_digest=digest_of(layer))
    return _register_one_layer(store, desc, _rfc3339(os.stat(busybox).st_mtime),
                               f"rade image bootstrap busybox ({busybox})", {"Env": [DEFAULT_PATH], "Cmd": ["sh"]},
                               reference)


# -- debian -----------------------------------------------------------------------------------------------


def apt_mirror(sources_dir: str = "/etc/apt") -> str:
    """The Debian archive this machine's apt uses (the first `/debian` URI in sources.list*), or
    deb.debian.org."""
    uris: list[str] = []
    paths = [os.path.join(sources_dir, "sources.list")] + sorted(
        glob.glob(os.path.join(sources_dir, "sources.list.d", "*.list"))
        + glob.glob(os.path.join(sources_dir, "sources.list.d", "*.sources")))
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as src:
                text = src.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
                if "deb" in fields.get("Types", "").split():
                    uris.extend(fields.get("URIs", "").split())
        else:
            for line in text.splitlines():
                words = [w for w in re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()]
                if len(words) >= 3 and words[0] == "deb":
                    uris.append(words[1])
    for uri in uris:
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def debian_architecture() -> str:
    """Debian's name for this machine's architecture (dpkg's, else the OCI name)."""
    try:
        out = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return host_architecture()


def bootstrap_debian(store: ImageStore, suite: str, reference: str, mirror: str | None = None) -> Image:
    """A Debian `suite` minbase image, tagged `reference`; debootstrap runs only when nothing is cached."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", suite):
        raise ImageError(f"{suite!r} is not a Debian suite name", "use e.g. debian:bookworm")
    arch = debian_architecture()
    cache_dir = os.path.join(store.root, "cache")
    os.makedirs(cache_dir, exist_ok=True)
    stem = os.path.join(cache_dir, f"debian-{suite}-{arch}")
    with file_lock(stem + ".lock"):
        record = read_json(stem + ".json")
        if not (isinstance(record, dict) and os.path.isfile(stem + ".tar")):
            record = _debootstrap_to_cache(store, suite, arch, mirror or apt_mirror(), stem)
        diff_id = record["diff_id"]
        if store.has_blob(diff_id):
            desc = Descriptor(OCI_LAYER, diff_id, os.stat(store.blob_path(diff_id)).st_size)
        else:
            with open(stem + ".tar", "rb") as src:
                desc = store.ingest_blob(src, diff_id, media_type=OCI_LAYER)
    return _register_one_layer(store, desc, record["created"],
                               f"rade image bootstrap debian:{suite} (debootstrap --variant=minbase "
                               f"{record['mirror']})", {"Env": [DEFAULT_PATH], "Cmd": ["bash"]}, reference)


def _debootstrap_to_cache(store: ImageStore, suite: str, arch: str, mirror: str, stem: str) -> dict[str, str]:
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed", "apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ImageError("debootstrap needs root", "run rade image bootstrap as root")
    work = tempfile.mkdtemp(prefix="debootstrap-", dir=store.tmp)
    target = os.path.join(work, "rootfs")
    try:
        run = subprocess.run(["debootstrap", "--variant=minbase", f"--arch={arch}", suite, target, mirror],
                             capture_output=True, text=True, check=False)
        _check_unmounted(target)
        if run.returncode != 0:
            tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
            raise ImageError(f"debootstrap {suite} from {mirror} failed: {' / '.join(tail)}",
                             f"see {os.path.join(target, 'debootstrap', 'debootstrap.log')}")
        for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*", "dev/*", "proc/*", "sys/*",
                        "run/*", "tmp/*", "var/log/*.log"):
            for path in glob.glob(os.path.join(target, pattern)):
                remove_tree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
        partial = stem + ".tar.partial"
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name", "-C", target,
                        "-cf", partial, "."], check=True, capture_output=True)
        with open(partial, "rb") as src:
            desc = store.ingest_blob(src, media_type=OCI_LAYER)
        os.rename(partial, stem + ".tar")
        record = {"suite": suite, "arch": arch, "mirror": mirror, "diff_id": desc.digest,
                  "created": _rfc3339(datetime.datetime.now(datetime.UTC).timestamp())}
        write_json_atomic(stem + ".json", record)
        return record
    except subprocess.CalledProcessError as err:
        raise ImageError(f"cannot tar the debootstrapped root: {err.stderr.decode(errors='replace').strip()}") \
            from None
    finally:
        _check_unmounted(target)
        remove_tree(work)


def _check_unmounted(target: str) -> None:
    """Refuse to go on (and delete) while debootstrap left something mounted inside the target."""
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point.startswith(os.path.realpath(target) + "/"):
                raise ImageError(f"debootstrap left {mount_point} mounted", f"unmount it, then remove {target}")
