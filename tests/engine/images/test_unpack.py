"""The extractor keeps every entry inside its layer, refuses hostile ones by name, and writes whiteouts
that a real overlayfs mount reads as the OCI spec says."""

from __future__ import annotations

import ctypes
import gzip
import os
import stat
import subprocess
import tarfile
import tempfile

import pytest

from engine.errors import ImageError, UnsafeArchiveError
from engine.images.content import digest_of
from engine.images.unpack import OPAQUE_XATTR, unpack_layer


@pytest.fixture
def area(tmp_path):
    """A target layer dir and a sibling 'outside' dir that must stay exactly as it was."""
    layer = tmp_path / "layer"
    outside = tmp_path / "outside"
    layer.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("untouched")
    return tmp_path


def unpack_bytes(area, data: bytes):
    source = area / "layer.tar"
    source.write_bytes(data)
    try:
        return unpack_layer(str(source), str(area / "layer"))
    finally:
        source.unlink()


def outside_is_untouched(area) -> bool:
    outside = area / "outside"
    return sorted(os.listdir(outside)) == ["victim"] and (outside / "victim").read_text() == "untouched" and \
        sorted(os.listdir(area)) == ["layer", "outside"]


def hostile_corpus(kit, outside: str) -> dict[str, tuple[list, str, str]]:
    """name -> (entries, the entry refused, words of the reason)."""
    f, d, s, h = kit.file, kit.directory, kit.symlink, kit.hardlink
    return {
        "absolute path": ([f(outside + "/pwned", b"x")], outside + "/pwned", "absolute path"),
        "dotdot": ([f("../outside/pwned", b"x")], "../outside/pwned", "'..'"),
        "inner dotdot": ([d("a"), f("a/../../outside/pwned", b"x")], "a/../../outside/pwned", "'..'"),
        "symlink absolute": ([s("evil", outside), f("evil/pwned", b"x")], "evil/pwned", "outside the layer"),
        "symlink dotdot": ([s("evil", "../outside"), f("evil/pwned", b"x")], "evil/pwned", "leaves the layer"),
        "symlink chain": ([s("a", "b"), s("b", "c/.."), d("c"), s("c/up", "../../outside"), s("b2", "a/c/up"),
                           f("b2/pwned", b"x")], "b2/pwned", "leaves the layer"),
        "chain to absolute": ([s("a", "b"), s("b", outside), f("a/pwned", b"x")], "a/pwned", "outside the layer"),
        "symlink loop": ([s("a", "b"), s("b", "a"), f("a/pwned", b"x")], "a/pwned", "too many levels"),
        "hardlink dotdot": ([h("link", "../outside/victim")], "link", "'..'"),
        "hardlink absolute": ([h("link", outside + "/victim")], "link", "absolute path"),
        "hardlink through symlink": ([s("dir", outside), h("link", "dir/victim")], "link", "outside the layer"),
        "hardlink to nothing": ([h("link", "missing")], "link", "not in this layer"),
        "hardlink to directory": ([d("dir"), h("link", "dir")], "link", "is a directory"),
        "file as parent": ([f("file", b"x"), f("file/child", b"y")], "file/child", "not a directory"),
        "overlay xattr": ([kit.Entry("f", b"x", xattrs={"trusted.overlay.redirect": "/outside"})], "f",
                          "overlayfs-private xattr"),
        "empty whiteout": ([f(".wh.", b"")], ".wh.", "whiteout names no file"),
        "dotdot whiteout": ([f(".wh...", b"")], ".wh...", "whiteout names no file"),
        "root as file": ([f("./", b"x")], "./", "layer root"),
    }


HOSTILE_CASES = ["absolute path", "dotdot", "inner dotdot", "symlink absolute", "symlink dotdot", "symlink chain",
                  "chain to absolute", "symlink loop", "hardlink dotdot", "hardlink absolute",
                  "hardlink through symlink", "hardlink to nothing", "hardlink to directory", "file as parent",
                  "overlay xattr", "empty whiteout", "dotdot whiteout", "root as file"]


@pytest.mark.root
@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_hostile_tarballs_are_refused_naming_the_entry_and_nothing_escapes(kit, area, case: str) -> None:
    entries, culprit, reason = hostile_corpus(kit, str(area / "outside"))[case]
    with pytest.raises(UnsafeArchiveError) as refused:
        unpack_bytes(area, kit.tar(entries))
    assert repr(culprit) in str(refused.value) and reason in str(refused.value)
    assert outside_is_untouched(area)


def test_a_later_entry_replaces_a_symlink_instead_of_writing_through_it(kit, area) -> None:
    victim = str(area / "outside" / "victim")
    unpack_bytes(area, kit.tar([kit.symlink("x", victim), kit.file("x", b"mine"),
                                kit.symlink("d", str(area / "outside")), kit.directory("d")]))
    assert (area / "layer" / "x").read_bytes() == b"mine" and not (area / "layer" / "x").is_symlink()
    assert (area / "layer" / "d").is_dir() and not (area / "layer" / "d").is_symlink()
    assert outside_is_untouched(area)


def test_writing_through_a_symlink_that_stays_inside_is_allowed(kit, area) -> None:
    unpack_bytes(area, kit.tar([kit.directory("usr/lib"), kit.symlink("lib", "usr/lib"),
                                kit.file("lib/libc.so", b"elf"), kit.hardlink("usr/lib/again", "lib/libc.so")]))
    layer = area / "layer"
    assert (layer / "usr/lib/libc.so").read_bytes() == b"elf"
    assert os.stat(layer / "usr/lib/again").st_ino == os.stat(layer / "usr/lib/libc.so").st_ino
    assert os.readlink(layer / "lib") == "usr/lib"


@pytest.mark.root
def test_modes_owners_mtimes_and_xattrs_are_kept(kit, area) -> None:
    unpack_bytes(area, kit.tar([
        kit.directory("ro", mode=0o555, uid=7, gid=8, mtime=1_500_000_000),
        kit.file("ro/suid", b"bin", mode=0o4755, uid=1000, gid=1001, mtime=1_400_000_000,
                 xattrs={"user.origin": "test", "security.capability": "\x01\x00\x00\x02" + "\x00" * 16}),
        kit.symlink("link", "ro/suid"),
    ]))
    layer = area / "layer"
    st = os.stat(layer / "ro/suid")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (1000, 1001)
    assert st.st_mtime == 1_400_000_000
    assert os.getxattr(layer / "ro/suid", "user.origin") == b"test"
    assert os.getxattr(layer / "ro/suid", "security.capability").startswith(b"\x01\x00\x00\x02")
    dst = os.stat(layer / "ro")
    assert stat.S_IMODE(dst.st_mode) == 0o555 and dst.st_mtime == 1_500_000_000 and dst.st_uid == 7


@pytest.mark.root
def test_gzip_zstd_and_plain_layers_unpack_alike_with_the_plain_tar_as_diff_id(kit, tmp_path) -> None:
    plain = kit.tar([kit.directory("etc"), kit.file("etc/os-release", b"ID=test\n" * 1000),
                     kit.file(".wh.gone")])
    (tmp_path / "l.tar").write_bytes(plain)
    (tmp_path / "l.tar.gz").write_bytes(gzip.compress(plain))
    subprocess.run(["zstd", "-q", "-o", str(tmp_path / "l.tar.zst"), str(tmp_path / "l.tar")], check=True)
    for name in ("l.tar", "l.tar.gz", "l.tar.zst"):
        dest = tmp_path / ("out-" + name)
        dest.mkdir()
        result = unpack_layer(str(tmp_path / name), str(dest))
        assert result.diff_id == digest_of(plain), name
        assert (dest / "etc/os-release").read_bytes() == b"ID=test\n" * 1000
        assert stat.S_ISCHR(os.lstat(dest / "gone").st_mode)


def test_truncated_and_non_tar_input_is_an_error_not_a_crash(kit, area) -> None:
    data = kit.tar([kit.file("big", b"x" * 5000)])
    with pytest.raises(ImageError):
        unpack_bytes(area, data[:1024])
    with pytest.raises(ImageError):
        unpack_bytes(area, b"\x1f\x8b" + b"garbage" * 20)
    assert outside_is_untouched(area)


def unpack_as_nobody(source: str, dest: str) -> str:
    """Unpack in a forked child that gave up root; return the error it raised ('' if none)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                unpack_layer(source, dest)
            except ImageError as err:
                os.write(write_end, str(err).encode())
        except BaseException as err:  # noqa: BLE001 - reported to the parent, which fails the test
            os.write(write_end, f"unexpected {type(err).__name__}: {err}".encode())
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, message
    return message


@pytest.mark.root
def test_devices_and_whiteouts_are_refused_when_not_root(kit, state_root) -> None:
    os.chmod(state_root, 0o755)  # the unprivileged child must reach its files
    for i, entries in enumerate(([kit.Entry("null", None, tarfile.CHRTYPE, mode=0o666)], [kit.file(".wh.gone")])):
        work = os.path.join(state_root, f"layer{i}")
        os.mkdir(work, 0o777)
        os.chmod(work, 0o777)
        source = os.path.join(state_root, f"in{i}.tar")
        with open(source, "wb") as out:
            out.write(kit.tar(entries))
        message = unpack_as_nobody(source, work)
        assert "refused" in message and "only by root" in message, message
        assert os.listdir(work) == []


# -- overlayfs reads the whiteouts -----------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str, data: str) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), 1, data.encode()) != 0:  # MS_RDONLY
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@pytest.mark.root
def test_overlay_of_two_layers_hides_whited_out_files_and_empties_opaque_dirs(kit, store) -> None:
    base = kit.tar([kit.directory("d"), kit.file("d/a", b"a"), kit.file("d/b", b"b"), kit.directory("o"),
                    kit.file("o/old", b"old"), kit.directory("o/sub"), kit.file("keep", b"k")])
    top = kit.tar([kit.file("d/.wh.a"), kit.directory("o"), kit.file("o/.wh..wh..opq"), kit.file("o/new", b"n"),
                   kit.file(".wh.keep")])
    image = kit.image(store, [base, top])
    top_dir = image.layer_dirs()[0]
    assert os.getxattr(os.path.join(top_dir, "o"), OPAQUE_XATTR) == b"y"
    merged = tempfile.mkdtemp(prefix="rade-merged-")
    try:
        _mount("overlay", merged, "overlay", "lowerdir=" + ":".join(image.layer_dirs()))
        try:
            assert sorted(os.listdir(merged)) == ["d", "o"]
            assert sorted(os.listdir(os.path.join(merged, "d"))) == ["b"]
            assert sorted(os.listdir(os.path.join(merged, "o"))) == ["new"]
        finally:
            _libc.umount2(merged.encode(), 2)  # MNT_DETACH
    finally:
        os.rmdir(merged)


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_a_sparse_file_keeps_its_holes_even_when_it_declares_a_terabyte(tmp_path, fmt) -> None:
    work = tmp_path / "src"
    work.mkdir()
    huge = work / "huge"
    with huge.open("wb") as out:
        out.truncate(1 << 40)
        out.seek(123_456_789)
        out.write(b"data in the middle")
    subprocess.run(["tar", f"--format={fmt}", "-S", "-C", str(work), "-cf", str(tmp_path / "s.tar"), "huge"],
                   check=True)
    huge.unlink()
    assert (tmp_path / "s.tar").stat().st_size < 64 * 1024
    dest = tmp_path / "layer"
    dest.mkdir()
    unpack_layer(str(tmp_path / "s.tar"), str(dest))
    st = os.stat(dest / "huge")
    assert st.st_size == 1 << 40 and st.st_blocks * 512 < 1 << 20
    with open(dest / "huge", "rb") as src:
        src.seek(123_456_789)
        assert src.read(18) == b"data in the middle"
