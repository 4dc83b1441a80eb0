"""`rade rename`, `rade port`, and `rade rm` finishing a removal a killed `rm` left half-way."""

from __future__ import annotations

import json
import os
import socket
import urllib.request

import pytest

from engine.containers.status import ContainerStatus
from engine.containers.store import ContainerStore

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_rename_changes_the_name_and_refuses_a_taken_one(rade):
    rade("create", "--name", "first-name", "busybox", "true")
    rade("create", "--name", "other-name", "busybox", "true")
    rade("rename", "first-name", "second-name")
    names = rade.out("ps", "-a", "--json")
    assert "second-name" in names and "first-name" not in names
    assert json.loads(rade.out("inspect", "second-name"))[0]["Name"] == "/second-name"

    taken = rade("rename", "second-name", "other-name", check=False)
    assert taken.returncode == 125
    assert taken.stderr.decode().startswith("rade: error: the container name 'other-name' is already in use")
    bad = rade("rename", "second-name", "no/slash", check=False)
    assert bad.returncode == 125 and b"invalid container name" in bad.stderr
    # The old name is free again: a new container may take it.
    rade("create", "--name", "first-name", "busybox", "true")
    rade("rm", "first-name", "second-name", "other-name")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_lists_published_ports_as_docker_prints_them(rade):
    host = _free_port()
    rade("run", "-d", "--name", "web-ports", "-p", f"127.0.0.1:{host}:80", "-p", "127.0.0.1:0:81/udp", "busybox",
         "sh", "-c", "echo hi > /i.html; httpd -f -p 80 -h /")
    lines = rade.out("port", "web-ports").splitlines()
    assert lines[0] == f"80/tcp -> 127.0.0.1:{host}"
    assert lines[1].startswith("81/udp -> 127.0.0.1:") and not lines[1].endswith(":0")
    assert rade.out("port", "web-ports", "80") == f"127.0.0.1:{host}"
    assert rade.out("port", "web-ports", "80/tcp") == f"127.0.0.1:{host}"
    missing = rade("port", "web-ports", "80/udp", check=False)
    assert missing.returncode == 125 and b"no public port '80/udp' published for web-ports" in missing.stderr
    for _ in range(100):  # the published port answers: the listing is the real binding
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{host}/i.html", timeout=2) as response:
                assert response.read() == b"hi\n"
            break
        except OSError:
            import time

            time.sleep(0.05)
    else:
        raise AssertionError("the published port never answered")
    rade("stop", "-t", "1", "web-ports")
    assert rade.out("port", "web-ports") == ""  # a stopped container has no bound ports
    rade("rm", "web-ports")


def test_rm_finishes_a_removal_left_half_way(rade, image_root):
    cid = rade.out("create", "--name", "half-removed", "busybox", "true")
    store = ContainerStore(image_root)
    # What a `rade rm` killed between marking and taking the directory away leaves.
    store.update(cid, lambda r: r.moved(ContainerStatus.REMOVING))
    assert "Removal In Progress" in rade.out("ps", "-a")
    rade("rm", "half-removed")
    assert "half-removed" not in rade.out("ps", "-a")
    assert not os.path.exists(store.dir(cid).path)


def test_rm_leaves_a_removal_in_progress_to_its_remover(rade, image_root):
    import fcntl

    cid = rade.out("create", "--name", "being-removed", "busybox", "true")
    store = ContainerStore(image_root)
    store.update(cid, lambda r: r.moved(ContainerStatus.REMOVING))
    fd = os.open(store.dir(cid).path / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a supervisor removing its own --rm container holds it
        refused = rade("rm", "being-removed", check=False)
        assert refused.returncode == 125 and b"is being removed by another process" in refused.stderr
    finally:
        os.close(fd)
    rade("rm", "being-removed")
    assert not os.path.exists(store.dir(cid).path)


def test_two_renames_to_one_name_at_once_give_it_to_one(rade):
    import subprocess

    rade("create", "--name", "race-a", "busybox", "true")
    rade("create", "--name", "race-b", "busybox", "true")
    racers = [rade.popen("rename", ref, "race-won", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
              for ref in ("race-a", "race-b")]
    codes = sorted(p.wait(timeout=60) for p in racers)
    for p in racers:
        p.stderr.close()
    assert codes == [0, 125]
    listing = rade.out("ps", "-a")
    assert listing.count("race-won") == 1 and (("race-a" in listing) != ("race-b" in listing))
    rade("rm", "race-won", "race-a" if "race-a" in listing else "race-b")
