"""Pulling from a registry: `rade pull` of a ~100 MB image against `skopeo copy` of it to a directory.

A local Debian `docker-registry` (127.0.0.1, a free port, storage in a temp dir) holds an image made with
umoci: four gzip layers of mixed data from a seeded PRNG (half random bytes, half text), ~100 MB compressed,
pushed there with skopeo. Each round pulls it into an empty place, rade and skopeo alternating, after one
warm-up each; the table gives medians. Note what each one does: `skopeo copy ... dir:` downloads and
verifies the blobs; `rade pull` downloads and verifies them too, and also unpacks every layer into the
store, ready to run. So a third row times rade's download-and-verify alone (the engine's `fetch`, in a
fresh interpreter as the command would be): the like-for-like comparison with skopeo.

Run: `.venv/bin/python bench/registry.py` (ROUNDS=N in the environment to change the 7 rounds).
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RADE = [sys.executable, "-m", "rade"]
ROUNDS = int(os.environ.get("ROUNDS", "7"))
LAYERS = 4
LAYER_BYTES = 40 << 20  # uncompressed; about half compresses away
FETCH_ONLY = ("import sys; from engine.images.store import ImageStore; "
              "from engine.images.transfer import RegistryOptions, fetch; "
              "fetch(ImageStore(sys.argv[1]), sys.argv[2], RegistryOptions())")
WORDS = [b"container", b"layer", b"registry", b"manifest", b"digest", b"overlay", b"node", b"rank", b"mpi",
         b"scheduler", b"queue", b"job", b"image", b"blob", b"tar", b"\n"]


def mixed_data(rng: random.Random, size: int) -> bytes:
    """`size` bytes: alternating 64 KiB runs of random bytes and of text made of a few words."""
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(1 << 16)
        text = b" ".join(rng.choice(WORDS) for _ in range(12000))
        out += text[: 1 << 16]
    return bytes(out[:size])


def build_image(work: Path) -> Path:
    """An OCI layout (tag v1) with LAYERS gzip layers, made with umoci."""
    layout, bundle = work / "oci", work / "bundle"
    rng = random.Random(20151)
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:v1"], check=True)
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle)], check=True,
                   capture_output=True)
    for n in range(LAYERS):
        directory = bundle / "rootfs" / f"layer{n}"
        directory.mkdir(parents=True)
        # Files of several sizes, as real layers have.
        left = LAYER_BYTES
        i = 0
        while left > 0:
            size = min(left, rng.choice([4 << 10, 64 << 10, 1 << 20, 8 << 20]))
            (directory / f"f{i}").write_bytes(mixed_data(rng, size))
            left -= size
            i += 1
        subprocess.run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:v1", str(bundle)], check=True,
                       capture_output=True)
    shutil.rmtree(bundle)
    return layout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(work: Path) -> tuple[subprocess.Popen, str]:
    """docker-registry on 127.0.0.1 with storage in `work`; inherited fds closed (or it can hold a lock)."""
    host = f"127.0.0.1:{free_port()}"
    config = work / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                      f"storage:\n  filesystem:\n    rootdirectory: {work / 'storage'}\n"
                      f"http:\n  addr: {host}\n")
    proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, timeout=1)
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            conn.close()
            return proc, host
        except OSError:
            time.sleep(0.02)
    stop(proc)
    raise SystemExit("docker-registry did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def timed(argv: list[str], cleanup: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, close_fds=True)
    took = time.perf_counter() - start
    shutil.rmtree(cleanup, ignore_errors=True)
    return took


def blob_bytes(layout: Path) -> int:
    return sum(p.stat().st_size for p in (layout / "blobs/sha256").iterdir())


def main() -> None:
    for tool in ("umoci", "skopeo", "/usr/bin/docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"needs {tool} (Debian packages umoci, skopeo, docker-registry)")
    with tempfile.TemporaryDirectory(prefix="rade-bench-registry-") as tmp:
        work = Path(tmp)
        layout = build_image(work)
        proc, host = start_registry(work)
        try:
            ref = f"{host}/bench/big:v1"
            subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:v1",
                            f"docker://{ref}"], check=True)
            env_root = work / "rade-root"
            rade = [*RADE, "--root", str(env_root), "pull", "-q", ref]
            fetch = [sys.executable, "-c", FETCH_ONLY, str(env_root), ref]
            skopeo = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"dir:{work / 'dir'}"]
            timed(rade, env_root)
            timed(skopeo, work / "dir")
            rade_s, fetch_s, skopeo_s = [], [], []
            for _ in range(ROUNDS):
                rade_s.append(timed(rade, env_root))
                skopeo_s.append(timed(skopeo, work / "dir"))
                fetch_s.append(timed(fetch, env_root))
        finally:
            stop(proc)
        size_mb = blob_bytes(layout) / 1e6
        rade_med, skopeo_med = statistics.median(rade_s), statistics.median(skopeo_s)
        print(f"image: {LAYERS} gzip layers, {size_mb:.1f} MB of blobs ({LAYERS * LAYER_BYTES / 1e6:.0f} MB "
              f"unpacked); {ROUNDS} alternating rounds, medians (min-max)")
        print(f"{'pull from a local registry':<44} {'seconds':>8} {'MB/s':>8}  spread")
        for name, runs in (("rade pull (download, verify, unpack)", rade_s),
                           ("rade fetch only (download, verify)", fetch_s),
                           ("skopeo copy to dir: (download, verify)", skopeo_s)):
            med = statistics.median(runs)
            print(f"{name:<44} {med:>8.3f} {size_mb / med:>8.1f}  {min(runs):.3f}-{max(runs):.3f}")
        print(f"ratio rade_fetch/skopeo download {statistics.median(fetch_s) / skopeo_med:.2f}")
        print(f"ratio rade/skopeo pull {rade_med / skopeo_med:.2f}")


if __name__ == "__main__":
    main()
