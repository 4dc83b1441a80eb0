"""`rade images`, `tag`, `rmi`, `history`, `save`, `load`, `import`, `image bootstrap`: the image store on
the command line. Thin: parse, call `engine.images`, print (tables on stdout, `--json` where a table is).

`inspect_image(root, ref)` is the image half of `rade inspect`, shaped like `docker inspect`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
from typing import Any

from jobs.errors import UsageError
from jobs.units import format_decimal_size

_SAVE_FORMATS = ("docker-archive", "oci-archive", "oci-dir")


def _store(args: argparse.Namespace):
    from engine.images.store import ImageStore

    return ImageStore(args.root)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def human_age(created: str | None, now: datetime.datetime | None = None) -> str:
    """'3 hours ago', from an RFC 3339 timestamp."""
    if not created:
        return "N/A"
    try:
        when = datetime.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", created))
    except ValueError:
        return created
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    seconds = ((now or datetime.datetime.now(datetime.UTC)) - when).total_seconds()
    for limit, unit in ((60, "second"), (3600, "minute"), (86400, "hour"), (86400 * 30, "day"),
                        (86400 * 365, "month")):
        if seconds < limit:
            step = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "month": 86400 * 30}[unit]
            count = max(1, int(seconds // step))
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    years = int(seconds // (86400 * 365))
    return f"{years} year{'s' if years > 1 else ''} ago"


# -- inspect ----------------------------------------------------------------------------------------------


def inspect_document(image: Any) -> dict[str, Any]:
    """An image as `docker inspect` shows it."""
    runtime = image.runtime_config
    config = image.config
    return {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": list(image.repo_digests),
        "Parent": "",
        "Comment": next((h.get("comment", "") for h in reversed(image.history) if h.get("comment")), ""),
        "Created": image.created,
        "Author": config.get("author", ""),
        "Architecture": config.get("architecture", ""),
        "Os": config.get("os", ""),
        "Config": {
            "Env": runtime.get("Env"),
            "Cmd": runtime.get("Cmd"),
            "Entrypoint": runtime.get("Entrypoint"),
            "WorkingDir": runtime.get("WorkingDir", ""),
            "User": runtime.get("User", ""),
            "ExposedPorts": runtime.get("ExposedPorts"),
            "Labels": runtime.get("Labels"),
            "Volumes": runtime.get("Volumes"),
            "StopSignal": runtime.get("StopSignal"),
        },
        "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
        "Size": image.size,
        "Descriptor": {"mediaType": image.manifest_media_type, "digest": image.manifest_digest,
                       "size": len(image.manifest)},
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(image.layer_dirs())}},
    }


def inspect_image(root: str, reference: str) -> dict[str, Any]:
    """The `docker inspect` document of the image `reference` names in the store at `root`
    (raises ImageError when there is none)."""
    from engine.images.store import ImageStore

    return inspect_document(ImageStore(root).resolve(reference))


# -- commands ---------------------------------------------------------------------------------------------


def _is_intermediate(image: Any, others: list[Any]) -> bool:
    """An untagged image whose layers and history begin another image's: a step of a build."""
    return not image.repo_tags and any(
        other.id != image.id and other.diff_ids[:len(image.diff_ids)] == image.diff_ids
        and other.history[:len(image.history)] == image.history and len(other.history) > len(image.history)
        for other in others)


def cmd_images(args: argparse.Namespace) -> int:
    from engine.images.reference import parse_reference

    images = _store(args).images()
    if not args.all:
        images = [i for i in images if not _is_intermediate(i, images)]
    if args.repository:
        want = parse_reference(args.repository)
        images = [i for i in images if any(
            parse_reference(t).name == want.name and (want.tag is None or parse_reference(t).tag == want.tag)
            for t in i.repo_tags)]
    if args.quiet:
        for image in images:
            print(image.short_id)
        return 0
    if args.json:
        print(json.dumps([{"Id": i.id, "RepoTags": list(i.repo_tags), "RepoDigests": list(i.repo_digests),
                           "Created": i.created, "Size": i.size} for i in images], indent=2))
        return 0
    rows = []
    for image in images:
        for tag in image.repo_tags or ("<none>:<none>",):
            repo, _, name = tag.rpartition(":")
            rows.append((repo, name, image.short_id, human_age(image.created), format_decimal_size(image.size)))
    _table(("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"), rows)
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    store = _store(args)
    store.tag(store.resolve(args.source), args.target)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    store = _store(args)
    for reference in args.images:
        removal = store.remove(reference, force=args.force)
        for name in removal.untagged:
            print(f"Untagged: {name}")
        for image_id in removal.deleted:
            print(f"Deleted: {image_id}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    store = _store(args)
    image = store.resolve(args.image)
    diff_ids = list(image.diff_ids)
    rows = []
    for entry in image.history:
        size = 0
        if not entry.get("empty_layer") and diff_ids:
            layer = store.layers.get(diff_ids.pop(0))
            size = layer.size if layer else 0
        rows.append({"created": entry.get("created"), "created_by": entry.get("created_by", ""), "size": size,
                     "comment": entry.get("comment", "")})
    rows.reverse()
    if args.json:
        print(json.dumps([{"Id": image.id if i == 0 else "<missing>", "Created": r["created"],
                           "CreatedBy": r["created_by"], "Size": r["size"], "Comment": r["comment"]}
                          for i, r in enumerate(rows)], indent=2))
        return 0
    width = None if args.no_trunc else 45
    _table(("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"), [
        (image.short_id if i == 0 else "<missing>", human_age(r["created"]),
         r["created_by"] if width is None or len(r["created_by"]) <= width else r["created_by"][:width - 3] + "...",
         format_decimal_size(r["size"]), r["comment"]) for i, r in enumerate(rows)])
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from engine.images.formats import ArchiveFormat, save_images

    fmt = ArchiveFormat(args.format)
    if args.output:
        save_images(_store(args), args.images, args.output, fmt)
        return 0
    if sys.stdout.isatty() or fmt is ArchiveFormat.OCI_DIR:
        raise UsageError("rade save needs -o FILE (or stdout redirected to a file or pipe)",
                         "e.g. rade save busybox -o busybox.tar")
    store = _store(args)
    with tempfile.TemporaryDirectory(prefix="save-", dir=store.tmp) as scratch:
        path = os.path.join(scratch, "archive.tar")
        save_images(store, args.images, path, fmt)
        with open(path, "rb") as src:
            shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
    sys.stdout.buffer.flush()
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from engine.images.formats import load_images

    store = _store(args)
    if args.input is not None:
        return _report_loaded(args, load_images(store, args.input))
    if sys.stdin.isatty():
        raise UsageError("rade load needs -i FILE (or the archive on stdin)", "e.g. rade load -i busybox.tar")
    with tempfile.TemporaryDirectory(prefix="load-", dir=store.tmp) as scratch:
        path = os.path.join(scratch, "archive.tar")
        with open(path, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        return _report_loaded(args, load_images(store, path))


def _report_loaded(args: argparse.Namespace, images: list[Any]) -> int:
    for loaded in images:
        if args.quiet:
            continue
        for tag in loaded.tags:
            print(f"Loaded image: {tag}")
        if not loaded.tags:
            print(f"Loaded image ID: {loaded.image.id}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from engine.images.rootfs import import_rootfs

    image = import_rootfs(_store(args), args.file, args.reference, args.change, args.message)
    print(image.id)
    return 0


def cmd_image_inspect(args: argparse.Namespace) -> int:
    store = _store(args)
    print(json.dumps([inspect_document(store.resolve(ref)) for ref in args.images], indent=4))
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from engine.images import bootstrap

    store = _store(args)
    if args.base == "busybox":
        image = bootstrap.bootstrap_busybox(store, args.reference)
    elif args.base.startswith("debian:"):
        image = bootstrap.bootstrap_debian(store, args.base.split(":", 1)[1], args.reference, args.mirror)
    else:
        raise UsageError(f"{args.base!r} is not a base rade can bootstrap", "use busybox or debian:SUITE")
    print(image.id)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("images", help="list images")
    p.add_argument("repository", nargs="?", help="only this repository (NAME or NAME:TAG)")
    p.add_argument("-a", "--all", action="store_true", help="also intermediate (build step) images")
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_images)
    p = subparsers.add_parser("tag", help="give an image another name")
    p.add_argument("source", metavar="SOURCE_IMAGE")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=cmd_tag)
    p = subparsers.add_parser("rmi", help="remove images (untag; delete when no tag is left)")
    p.add_argument("-f", "--force", action="store_true", help="remove every tag, even of an image in use")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)
    p = subparsers.add_parser("history", help="the steps that made an image")
    p.add_argument("image")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)
    p = subparsers.add_parser("save", help="write images to a docker-archive or OCI archive")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write (default: stdout when it is not a terminal; an oci-dir is a new directory)")
    p.add_argument("--format", default="docker-archive", choices=_SAVE_FORMATS)
    p.set_defaults(func=cmd_save)
    p = subparsers.add_parser("load", help="load images from a docker-archive, oci-archive or OCI layout")
    p.add_argument("-i", "--input", metavar="FILE",
                   help="the archive or OCI layout directory (default: the archive on stdin)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_load)
    p = subparsers.add_parser("import", help="make a one-layer image from a root filesystem tarball")
    p.add_argument("file", metavar="TAR", help="a tar of a root filesystem (gzip/zstd too), or - for stdin")
    p.add_argument("reference", metavar="NAME[:TAG]", nargs="?")
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                   help="CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL or EXPOSE, as in a Containerfile")
    p.add_argument("-m", "--message", default="", help="a comment for the image's history")
    p.set_defaults(func=cmd_import)
    image = subparsers.add_parser("image", help="base images: rade image bootstrap busybox|debian:SUITE NAME")
    image_sub = image.add_subparsers(dest="image_command", metavar="COMMAND", parser_class=subparsers._parser_class)
    image_sub.required = True
    p = image_sub.add_parser("bootstrap", help="make a base image without a registry",
                             description="busybox: from the host's busybox-static; debian:SUITE: debootstrap "
                                         "minbase from this machine's Debian mirror (cached for next time).")
    p.add_argument("base", metavar="busybox|debian:SUITE")
    p.add_argument("reference", metavar="NAME[:TAG]")
    p.add_argument("--mirror", default=None, help="the Debian mirror (default: the one apt uses here)")
    p.set_defaults(func=cmd_bootstrap)
    p = image_sub.add_parser("inspect", help="images as JSON, like docker image inspect")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_image_inspect)
    for name, handler, help_text in (("ls", cmd_images, "list images"), ("rm", cmd_rmi, "remove images")):
        p = image_sub.add_parser(name, help=help_text)
        if name == "ls":
            p.add_argument("repository", nargs="?")
            p.add_argument("-a", "--all", action="store_true")
            p.add_argument("-q", "--quiet", action="store_true")
            p.add_argument("--json", action="store_true")
        else:
            p.add_argument("-f", "--force", action="store_true")
            p.add_argument("images", nargs="+", metavar="IMAGE")
        p.set_defaults(func=handler)
