"""End to end on the engine: a busybox container on the bridge, its httpd published through the port
proxy, answers on 127.0.0.1; the container sees its own name and address in /etc/hosts."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from engine.launch import LaunchConfig, launch
from engine.network.container import NetworkMode, setup_container_network, teardown_container_network
from engine.network.hosts import render_hosts
from engine.network.ports import parse_publish
from engine.network.proxy import PortProxy

pytestmark = [pytest.mark.root, pytest.mark.slow]

BUSYBOX = "/bin/busybox"


@pytest.fixture(scope="module")
def busybox_root():
    """An image layer holding busybox-static, its applet links and a page for httpd to serve."""
    if os.geteuid() != 0 or not os.path.exists(BUSYBOX):
        pytest.skip("needs root and Debian's busybox-static")
    layer = Path(tempfile.mkdtemp(prefix="rade-test-netlayer-"))
    try:
        (layer / "bin").mkdir()
        shutil.copy2(BUSYBOX, layer / "bin/busybox")
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
        for applet in applets.split():
            if applet != "busybox":
                os.symlink("busybox", layer / "bin" / applet)
        for d in ("tmp", "etc", "proc", "sys", "dev", "www"):
            (layer / d).mkdir(exist_ok=True)
        (layer / "www/index.html").write_text("hello from the bridge\n")
        yield str(layer)
    finally:
        shutil.rmtree(layer, ignore_errors=True)


@pytest.fixture
def bridged(busybox_root, test_bridge):
    """A factory: bridged(argv) launches a container on the test bridge; all are removed afterwards."""
    state = Path(tempfile.mkdtemp(prefix="rade-test-netstate-"))
    started = []

    def run(argv: tuple[str, ...], stdout: int = 1):
        container_id = uuid.uuid4().hex
        cdir = state / container_id
        cdir.mkdir()
        started.append([container_id, None])
        network = setup_container_network(state, container_id, NetworkMode.BRIDGE, cdir, test_bridge)
        config = LaunchConfig(
            container_id=container_id,
            lower_dirs=(busybox_root,),
            upper_dir=str(cdir / "upper"),
            work_dir=str(cdir / "work"),
            rootfs_dir=str(cdir / "rootfs"),
            argv=argv,
            hostname=container_id[:12],
            network=network.launch_network,
            hosts=render_hosts(container_id[:12], network.address.ip, ["web"]),
        )
        with open(os.devnull) as null:
            process = launch(replace(config, stdin=null.fileno(), stdout=stdout))
        started[-1][1] = process
        return network, process

    try:
        yield run
    finally:
        for container_id, process in started:
            if process is not None:
                process.cleanup()
            teardown_container_network(state, container_id, test_bridge)
        shutil.rmtree(state, ignore_errors=True)


def fetch(port: int, deadline: float) -> str:
    """GET / on 127.0.0.1:port, retrying until httpd inside the container listens."""
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_busybox_httpd_published_with_p_answers_on_loopback(bridged):
    network, _ = bridged(("httpd", "-f", "-p", "80", "-h", "/www"))
    proxy = PortProxy(network.address.ip, [parse_publish("127.0.0.1:0:80")])
    [bound] = proxy.start()
    try:
        assert fetch(bound.host_port, time.monotonic() + 20) == "hello from the bridge\n"
    finally:
        proxy.stop()


def test_container_sees_its_name_and_address_in_etc_hosts_and_only_eth0_and_lo(bridged, tmp_path):
    out = tmp_path / "out"
    with open(out, "w") as sink:
        network, process = bridged(
            ("sh", "-c", "cat /etc/hosts; ip -o -4 addr; hostname"), stdout=sink.fileno()
        )
        assert process.wait() == 0
    text = out.read_text()
    name = network.netns.name.removeprefix("rade-")[:12]
    assert f"{network.address.ip}\t{name} web" in text
    addresses = [line.split()[1:4] for line in text.splitlines() if " inet " in line]
    assert addresses == [["lo", "inet", "127.0.0.1/8"], ["eth0", "inet", str(network.address)]]
    assert text.strip().splitlines()[-1] == name
