"""What containers write: diff, commit then run of the new image, volumes (bind, named, anonymous,
--volumes-from, read-only), exec, and a published port answering on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.engine.containers.conftest import wait_child, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_diff_lists_what_the_container_changed(rade):
    cid = rade.out("run", "--network", "none", "busybox", "sh", "-c",
                   "mkdir /new && echo x > /new/file && rm /etc/group && echo y >> /etc/passwd; echo done")
    cid = rade.out("ps", "-aq").split()[0]
    lines = rade.out("diff", cid).splitlines()
    assert "A /new" in lines and "A /new/file" in lines
    assert "D /etc/group" in lines and "C /etc/passwd" in lines and "C /etc" in lines
    assert not any(line.endswith(("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")) for line in lines)


def test_commit_then_run_sees_the_change(rade):
    rade("run", "--name", "to-commit", "--network", "none", "busybox", "sh", "-c",
         "echo committed > /marker && rm /etc/group")
    image_id = rade.out("commit", "to-commit", "committed-test:v1")
    try:
        assert image_id.startswith("sha256:")
        result = rade("run", "--rm", "--network", "none", "committed-test:v1", "sh", "-c",
                      "cat /marker; test -e /etc/group && echo group-back || echo group-gone")
        assert result.stdout == b"committed\ngroup-gone\n"
    finally:
        rade("rm", "to-commit", check=False)
        rade("rmi", "committed-test:v1", check=False)


def test_bind_mount_and_read_only(rade, tmp_path):
    (tmp_path / "in.txt").write_text("from host")
    out = rade.out("run", "--rm", "--network", "none", "-v", f"{tmp_path}:/data", "busybox", "sh", "-c",
                   "cat /data/in.txt; echo back > /data/out.txt")
    assert out == "from host" and (tmp_path / "out.txt").read_text() == "back\n"
    result = rade("run", "--rm", "--network", "none", "-v", f"{tmp_path}:/data:ro", "busybox", "sh", "-c",
                  "echo no > /data/x", check=False)
    assert result.returncode != 0 and not (tmp_path / "x").exists()


def test_named_volume_outlives_its_container_and_is_shared(rade, image_root):
    name = "persist-test"
    try:
        rade("run", "--rm", "--network", "none", "-v", f"{name}:/vol", "busybox", "sh", "-c", "echo kept > /vol/f")
        assert rade.out("run", "--rm", "--network", "none", "-v", f"{name}:/vol", "busybox", "cat", "/vol/f") == "kept"
        assert name in rade.out("volume", "ls", "-q").split()
    finally:
        rade("volume", "rm", name, check=False)
    assert not (image_root / "volumes" / name).exists()


def test_new_named_volume_starts_with_the_images_content(rade):
    try:
        out = rade.out("run", "--rm", "--network", "none", "-v", "etc-copy:/etc", "busybox", "cat", "/etc/passwd")
        assert "root:" in out
    finally:
        rade("volume", "rm", "etc-copy", check=False)


def test_volumes_from_shares_the_volumes(rade):
    rade("create", "--name", "data-holder", "--network", "none", "-v", "/shared", "busybox", "true")
    rade("run", "--rm", "--network", "none", "--volumes-from", "data-holder", "busybox", "sh", "-c",
         "echo via-from > /shared/f")
    out = rade.out("run", "--rm", "--network", "none", "--volumes-from", "data-holder:ro", "busybox", "sh", "-c",
                   "cat /shared/f; echo x > /shared/g 2>/dev/null || echo read-only")
    assert out == "via-from\nread-only"
    mounts = json.loads(rade.out("inspect", "data-holder"))[0]["Mounts"]
    assert mounts[0]["Destination"] == "/shared" and mounts[0]["Type"] == "volume"


def test_exec_runs_in_the_containers_namespaces(rade):
    cid = rade.out("run", "-d", "--hostname", "exectest", "--network", "none", "busybox", "sleep", "60")
    assert rade.out("exec", cid, "hostname") == "exectest"
    assert rade("exec", cid, "sh", "-c", "exit 9", check=False).returncode == 9
    assert rade("exec", cid, "nope", check=False).returncode == 127
    assert rade.out("exec", "-i", cid, "cat", input=b"via exec\n") == "via exec"
    assert "sleep 60" in rade.out("top", cid)
    rade("rm", "-f", cid)


def test_published_port_answers_on_loopback(rade):
    cid = rade.out("run", "-d", "-p", "127.0.0.1::80", "busybox", "sh", "-c",
                   "mkdir -p /www && echo hello-from-httpd > /www/index.html && httpd -f -p 80 -h /www")
    ports = json.loads(rade.out("inspect", cid))[0]["NetworkSettings"]["Ports"]["80/tcp"]
    port = int(ports[0]["HostPort"])
    assert port > 0

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return response.read() == b"hello-from-httpd\n"
        except OSError:
            return False

    wait_for(answers, 15, "httpd to answer through the proxy")
    assert f"127.0.0.1:{port}->80/tcp" in rade.out("ps")
    rade("stop", "-t", "1", cid)


def test_exec_with_a_terminal(rade):
    import os
    import select
    import time

    cid = rade.out("run", "-d", "--network", "none", "busybox", "sleep", "60")
    master, slave = os.openpty()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.execv(rade.argv()[0], rade.argv("exec", "-t", "-i", cid, "sh", "-c", "test -t 1 && echo exec-tty"))
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    code = wait_child(pid)
    os.close(master)
    assert code == 0 and b"exec-tty" in out
    rade("rm", "-f", cid)


def test_volume_in_use_cannot_be_removed(rade):
    rade("create", "--name", "vol-user", "--network", "none", "-v", "busy-vol:/data", "busybox", "true")
    try:
        result = rade("volume", "rm", "busy-vol", check=False)
        assert result.returncode == 125 and b"in use by vol-user" in result.stderr
        rade("rm", "vol-user")
        rade("volume", "rm", "busy-vol")
        assert "busy-vol" not in rade.out("volume", "ls", "-q").split()
    finally:
        rade("rm", "-f", "vol-user", check=False)
        rade("volume", "rm", "busy-vol", check=False)
