"""diff and the commit layer from an upper dir laid out as overlayfs leaves it."""

import os
import tarfile

from engine.containers.diff import changes, write_layer


def _layout(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root")
    (lower / "etc" / "old").write_text("x")
    (lower / "bin").mkdir()
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "passwd").write_text("root\nuser")
    os.mknod(upper / "etc" / "old", 0o600 | 0o020000, 0)
    (upper / "new").mkdir()
    (upper / "new" / "file").write_text("n")
    (upper / "etc" / "hosts").write_text("")  # a mount point the launch made
    return lower, upper


def test_diff_lists_added_changed_and_deleted(tmp_path):
    lower, upper = _layout(tmp_path)
    got = [str(c) for c in changes(upper, [lower], frozenset({"/etc/hosts"}))]
    assert got == ["C /etc", "D /etc/old", "C /etc/passwd", "A /new", "A /new/file"]


def test_commit_layer_has_whiteouts(tmp_path):
    _lower, upper = _layout(tmp_path)
    out = tmp_path / "layer.tar"
    write_layer(upper, out, frozenset({"/etc/hosts"}))
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
    assert names == ["etc", "etc/.wh.old", "etc/passwd", "new", "new/file"]


def test_a_directory_holding_only_a_launch_mountpoint_is_no_change(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "os-release").write_text("x")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "hosts").write_text("")  # the image had no /etc/hosts: the launch made one to bind on
    assert changes(upper, [lower], frozenset({"/etc/hosts"})) == []
    (upper / "etc" / "motd").write_text("hi")
    assert [str(c) for c in changes(upper, [lower], frozenset({"/etc/hosts"}))] == ["C /etc", "A /etc/motd"]
