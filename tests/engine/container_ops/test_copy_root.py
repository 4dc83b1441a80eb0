"""`rade cp` against real containers: both ways, files and directories, running and stopped containers
(a stopped one's upper dir and volumes), tar streams on stdin/stdout, owners, symlinks in the container
that must not lead to the host, and errors as one line."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def tree(tmp_path):
    """A host directory: d/a.txt (owned 1234:5678), d/sub/b, d/link -> a.txt."""
    d = tmp_path / "src" / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("alpha\n")
    (d / "sub" / "b").write_text("beta\n")
    os.symlink("a.txt", d / "link")
    os.chown(d / "a.txt", 1234, 5678)
    os.chmod(d / "sub" / "b", 0o751)
    return d


def test_copy_both_ways_with_a_running_container(rade, tree, tmp_path):
    rade("run", "-d", "--network", "none", "--name", "cp-run", "busybox", "sleep", "1000")
    rade("cp", str(tree), "cp-run:/srv")  # a missing destination: made as a copy of the directory
    assert rade.out("exec", "cp-run", "cat", "/srv/a.txt", "/srv/sub/b") == "alpha\nbeta"
    assert rade.out("exec", "cp-run", "readlink", "/srv/link") == "a.txt"
    assert rade.out("exec", "cp-run", "stat", "-c", "%u:%g %a", "/srv/a.txt", "/srv/sub/b") == "0:0 644\n0:0 751"
    rade("cp", str(tree), "cp-run:/tmp")  # an existing directory: copied into it by name
    rade("cp", f"{tree}/.", "cp-run:/opt")  # DIR/. : its contents
    assert rade.out("exec", "cp-run", "ls", "/tmp/d", "/opt").split() == \
        ["/opt:", "a.txt", "link", "sub", "/tmp/d:", "a.txt", "link", "sub"]
    rade("exec", "cp-run", "sh", "-c", "echo old > /srv/old.txt")
    rade("cp", "-a", str(tree / "a.txt"), "cp-run:/srv/old.txt")  # over a file: replaced, owners kept
    assert rade.out("exec", "cp-run", "sh", "-c", "cat /srv/old.txt; stat -c %u:%g /srv/old.txt") == "alpha\n1234:5678"
    rade("exec", "cp-run", "sh", "-c", "echo made inside > /srv/inside.txt; chown 42:43 /srv/inside.txt")
    out = tmp_path / "out"
    rade("cp", "cp-run:/srv", str(out))
    assert (out / "a.txt").read_text() == "alpha\n" and (out / "inside.txt").read_text() == "made inside\n"
    assert os.readlink(out / "link") == "a.txt"
    assert os.stat(out / "inside.txt").st_uid == os.getuid()  # without -a: owned by who copies
    rade("cp", "-a", "cp-run:/srv/inside.txt", str(tmp_path / "kept.txt"))
    st = os.stat(tmp_path / "kept.txt")
    assert (st.st_uid, st.st_gid) == (42, 43)
    rade("rm", "-f", "cp-run")


def test_copy_with_a_stopped_container_uses_its_upper_dir_and_volumes(rade, tree, tmp_path):
    volume = tmp_path / "vol"
    volume.mkdir()
    rade("create", "--network", "none", "--name", "cp-stopped", "-v", f"{volume}:/data", "busybox",
         "sh", "-c", "cat /etc/motd /data/a.txt > /data/seen; echo from-run > /var/ran")
    rade("cp", str(tree / "a.txt"), "cp-stopped:/data/")
    (tmp_path / "motd").write_text("copied while stopped\n")
    rade("cp", str(tmp_path / "motd"), "cp-stopped:/etc/motd")
    assert (volume / "a.txt").read_text() == "alpha\n"  # through the volume, onto the host directory
    rade("start", "-a", "cp-stopped")
    assert (volume / "seen").read_text() == "copied while stopped\nalpha\n"
    rade("cp", "cp-stopped:/var/ran", str(tmp_path / "ran"))
    assert (tmp_path / "ran").read_text() == "from-run\n"
    rade("rm", "cp-stopped")


def test_tar_streams_on_stdin_and_stdout(rade, tmp_path):
    rade("run", "-d", "--network", "none", "--name", "cp-tar", "busybox", "sleep", "1000")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"from a stream\n"
        info = tarfile.TarInfo("streamed/file.txt")
        info.size, info.uid, info.gid = len(data), 7, 8
        tar.addfile(info, io.BytesIO(data))
    rade("cp", "-a", "-", "cp-tar:/tmp", input=buf.getvalue())
    assert rade.out("exec", "cp-tar", "stat", "-c", "%u:%g", "/tmp/streamed/file.txt") == "7:8"
    stream = rade("cp", "cp-tar:/tmp/streamed", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        names = tar.getnames()
        assert names == ["streamed", "streamed/file.txt"]
        assert tar.extractfile("streamed/file.txt").read() == b"from a stream\n"
    not_dir = rade("cp", "-", "cp-tar:/etc/passwd", input=buf.getvalue(), check=False)
    assert not_dir.returncode == 125 and b"is not a directory" in not_dir.stderr
    rade("rm", "-f", "cp-tar")


def test_symlinks_in_the_container_never_lead_to_the_host(rade, tmp_path):
    host_dir = tmp_path / "host-secret"
    host_dir.mkdir()
    (host_dir / "secret").write_text("host only\n")
    rade("run", "-d", "--network", "none", "--name", "cp-evil", "busybox", "sh", "-c",
         f"ln -s {host_dir} /escape; ln -s ../../../../../../../../{host_dir} /up; exec sleep 1000")
    for path in ("/escape/secret", "/up/secret"):
        result = rade("cp", f"cp-evil:{path}", str(tmp_path / "stolen"), check=False)
        assert result.returncode == 125 and b"no such file or directory in container" in result.stderr
    followed = rade("cp", "-L", "cp-evil:/escape", str(tmp_path / "stolen"), check=False)
    assert followed.returncode == 125
    assert not (tmp_path / "stolen").exists()
    (tmp_path / "payload").write_text("planted\n")
    for path in ("/escape/planted", "/up/planted", "/escape/"):
        rade("cp", str(tmp_path / "payload"), f"cp-evil:{path}", check=False)
    assert sorted(os.listdir(host_dir)) == ["secret"]
    # The link itself is copied out as a link, pointing where it points, not at the host's files.
    rade("cp", "cp-evil:/escape", str(tmp_path / "link-copy"))
    assert os.readlink(tmp_path / "link-copy") == str(host_dir)
    rade("rm", "-f", "cp-evil")


def test_copy_errors_are_one_line(rade, tree, tmp_path):
    rade("create", "--name", "cp-err", "busybox", "true")
    cases = [
        (("cp", "cp-err:/no/such", str(tmp_path / "x")), 125, "no such file or directory in container cp-err"),
        (("cp", str(tmp_path / "nothing"), "cp-err:/tmp"), 125, "no such file or directory on the host"),
        (("cp", str(tree), "cp-err:/etc/passwd"), 125, "cannot copy a directory onto the file /etc/passwd"),
        (("cp", str(tree / "a.txt"), "cp-err:/no/dir/"), 125, "does not exist"),
        (("cp", str(tree / "a.txt"), "cp-err:/etc/passwd/"), 125, "/etc/passwd/ is not a directory"),
        (("cp", str(tree / "a.txt"), "cp-err:/etc/passwd/x"), 125, "/etc/passwd is not a directory"),
        (("cp", "cp-err:/etc/passwd", str(tree / "a.txt") + "/x"), 125, "a.txt is not a directory"),
        (("cp", "cp-err:/a", "cp-err:/b"), 2, "between two containers"),
        (("cp", str(tree), str(tmp_path)), 2, "CONTAINER:PATH"),
    ]
    for argv, code, text in cases:
        result = rade(*argv, check=False)
        err = result.stderr.decode()
        assert result.returncode == code, (argv, err)
        assert err.startswith("rade: error: ") and err.count("\n") == 1 and text in err, (argv, err)
    rade("rm", "cp-err")


def test_read_only_root_and_volume_refuse_copies_in_one_line(rade, tree, tmp_path):
    volume = tmp_path / "ro-vol"
    volume.mkdir()
    rade("run", "-d", "--network", "none", "--name", "cp-ro", "--read-only", "-v", f"{volume}:/data:ro",
         "busybox", "sleep", "1000")
    root = rade("cp", str(tree / "a.txt"), "cp-ro:/tmp/", check=False)
    assert root.returncode == 125 and b"has a read-only root" in root.stderr
    rade("run", "-d", "--network", "none", "--name", "cp-rovol", "-v", f"{volume}:/data:ro", "busybox",
         "sleep", "1000")
    vol = rade("cp", str(tree / "a.txt"), "cp-rovol:/data/", check=False)
    err = vol.stderr.decode()
    assert vol.returncode == 125 and "Read-only file system" in err and err.count("\n") == 1
    assert os.listdir(volume) == []
    rade("pause", "cp-rovol")  # a paused container's files can be read all the same
    rade("cp", "cp-rovol:/etc/passwd", str(tmp_path / "passwd"))
    assert (tmp_path / "passwd").read_text().startswith("root:")
    rade("rm", "-f", "cp-ro", "cp-rovol")


def test_copy_onto_a_file_volume_writes_the_host_file(rade, tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("old\n")
    rade("run", "-d", "--network", "none", "--name", "cp-filevol", "-v", f"{conf}:/etc/app.conf", "busybox",
         "sleep", "1000")
    (tmp_path / "new.conf").write_text("new\n")
    rade("cp", str(tmp_path / "new.conf"), "cp-filevol:/etc/app.conf")
    assert conf.read_text() == "new\n"  # through the mount, not a file put over it
    assert rade.out("exec", "cp-filevol", "cat", "/etc/app.conf") == "new"
    rade("stop", "-t", "1", "cp-filevol")
    (tmp_path / "newer.conf").write_text("newer\n")
    rade("cp", str(tmp_path / "newer.conf"), "cp-filevol:/etc/app.conf")  # stopped: its volumes mounted
    assert conf.read_text() == "newer\n"
    rade("rm", "cp-filevol")


def test_copy_never_replaces_a_directory_or_a_mounted_file_inside_a_tree(rade, tmp_path):
    volume = tmp_path / "vol"
    (volume / "keep").mkdir(parents=True)
    (volume / "keep" / "precious").write_text("still here\n")
    conf = tmp_path / "app.conf"
    conf.write_text("old\n")
    rade("run", "-d", "--network", "none", "--name", "cp-guard", "-v", f"{volume}:/srv/data",
         "-v", f"{conf}:/srv/app.conf", "busybox", "sleep", "1000")
    (tmp_path / "data").write_text("a file named like the volume\n")
    over_dir = rade("cp", str(tmp_path / "data"), "cp-guard:/srv/", check=False)
    assert over_dir.returncode == 125 and b"does not replace a directory with a file" in over_dir.stderr
    assert (volume / "keep" / "precious").read_text() == "still here\n"
    tree = tmp_path / "tree" / "srv"
    tree.mkdir(parents=True)
    (tree / "app.conf").write_text("from a tree\n")
    in_tree = rade("cp", f"{tree}/.", "cp-guard:/srv", check=False)
    assert in_tree.returncode == 125 and b"mounted of its own" in in_tree.stderr
    single = tmp_path / "single"
    single.mkdir()
    (single / "app.conf").write_text("into the directory\n")
    rade("cp", str(single / "app.conf"), "cp-guard:/srv/")  # a file into a directory, over the mounted file
    assert conf.read_text() == "into the directory\n"
    rade("rm", "-f", "cp-guard")


def test_a_terminal_is_told_how_much_was_copied_a_script_is_not(rade, tree, tmp_path):
    import subprocess

    rade("create", "--name", "cp-said", "busybox", "true")
    quiet = rade("cp", str(tree), "cp-said:/srv")
    assert quiet.stderr == b""  # not a terminal: nothing said
    master, slave = os.openpty()
    try:
        child = rade.popen("cp", "cp-said:/srv", str(tmp_path / "back"), stderr=slave, stdout=subprocess.DEVNULL)
        os.close(slave)
        slave = -1
        assert child.wait(timeout=60) == 0
        said = os.read(master, 4096).decode()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert said.startswith("Successfully copied ") and said.rstrip().endswith(f"kB to {tmp_path / 'back'}")
    rade("rm", "cp-said")


def test_follow_link_copies_what_a_host_symlink_points_to(rade, tree, tmp_path):
    os.symlink(tree / "a.txt", tmp_path / "to-a")
    rade("create", "--name", "cp-follow", "busybox", "true")
    rade("cp", str(tmp_path / "to-a"), "cp-follow:/tmp/as-link")
    rade("cp", "-L", str(tmp_path / "to-a"), "cp-follow:/tmp/as-file")
    rade("cp", "cp-follow:/tmp", str(tmp_path / "back"))
    assert os.readlink(tmp_path / "back" / "as-link") == str(tree / "a.txt")
    assert not os.path.islink(tmp_path / "back" / "as-file")
    assert (tmp_path / "back" / "as-file").read_text() == "alpha\n"
    rade("rm", "cp-follow")


def test_copy_out_onto_a_device_or_fifo_writes_into_it_and_a_tree_never_replaces_one(rade, tmp_path):
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of the test's own
    rade("run", "-d", "--network", "none", "--name", "cp-dev", "busybox", "sleep", "1000")
    rade("cp", "cp-dev:/etc/hostname", str(null))
    assert stat.S_ISCHR(os.lstat(null).st_mode)  # written into, not replaced by a file
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    rade("cp", "cp-dev:/etc/hostname", str(fifo))
    assert reader.communicate(timeout=30)[0].strip() == rade.out("exec", "cp-dev", "hostname").encode()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mknod(tree / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    rade("exec", "cp-dev", "sh", "-c", "mkdir /t && echo data > /t/null")
    onto = rade("cp", "cp-dev:/t/.", str(tree), check=False)
    assert onto.returncode == 125 and b"is a device or a FIFO" in onto.stderr
    assert stat.S_ISCHR(os.lstat(tree / "null").st_mode)
    rade("rm", "-f", "cp-dev")
