"""Image store benchmark: `rade load` of a ~200 MB docker-archive against `tar -x` of the same layers, and
resolving overlayfs lowerdirs for 100 containers of a large image and of a tiny one with as many layers
(it must not grow with the image's size: nothing is copied).

The archive is generated from a seeded PRNG (a few layers of files of mixed sizes, as a real image has),
both sides read it from the page cache, and rounds alternate rade and tar so drift hits both alike. CPU
seconds (user + system of the child processes) are shown beside wall time: on a shared machine they are
the steadier figure.
Usage: bench/images.py [--mb 200] [--layers 4] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RADE = [sys.executable, "-m", "rade"]


def make_layer(path: Path, rng: random.Random, target: int, index: int) -> None:
    """A layer tar of files whose sizes follow a log-normal spread (median ~20 kB, some MBs)."""
    written = 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        n = 0
        while written < target:
            size = min(int(rng.lognormvariate(10, 1.6)), 8 << 20, target - written) or 1
            directory = f"layer{index}/d{n // 50:03d}"
            if n % 50 == 0:
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            info = tarfile.TarInfo(f"{directory}/f{n:05d}.bin")
            info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(rng.randbytes(size)))
            written += size
            n += 1


def make_archive(work: Path, total_bytes: int, layers: int, tag: str = "bench:big") -> tuple[Path, list[Path], int]:
    """A docker-archive of `layers` layers totalling about `total_bytes`, tagged `tag`; returns it, the
    layer tars, and the number of files."""
    import hashlib

    rng = random.Random(20240601)
    paths, diff_ids = [], []
    for i in range(layers):
        path = work / f"layer{i}.tar"
        make_layer(path, rng, total_bytes // layers, i)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        paths.append(path)
        diff_ids.append("sha256:" + digest)
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-06-01T00:00:00Z",
                         "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": f"layer {i}"} for i in range(layers)]}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    archive = work / f"image-{layers}-{total_bytes}.tar"
    files = 0
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                                "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids]}]).encode()
        for name, data in (("manifest.json", manifest), (config_name, config)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for path, diff_id in zip(paths, diff_ids):
            tar.add(path, f"{diff_id[7:]}/layer.tar")
            with tarfile.open(path) as layer:
                files += sum(1 for m in layer if m.isreg())
    return archive, paths, files


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_tar(layers: list[Path], dest: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `tar -xf` of each layer into its own directory."""
    os.sync()  # both sides start with no dirty pages of the other's to write back
    start, cpu = time.perf_counter(), children_cpu()
    for i, layer in enumerate(layers):
        target = dest / str(i)
        target.mkdir(parents=True)
        subprocess.run(["tar", "-xf", str(layer), "-C", str(target)], check=True)
    return time.perf_counter() - start, children_cpu() - cpu


def time_rade_load(archive: Path, root: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `rade load -i` into an empty store (the command, interpreter start included)."""
    os.sync()
    start, cpu = time.perf_counter(), children_cpu()
    subprocess.run([*RADE, "--root", str(root), "load", "-q", "-i", str(archive)], check=True)
    return time.perf_counter() - start, children_cpu() - cpu


def time_lowerdirs(root: Path, reference: str, containers: int = 100) -> float:
    """Seconds to resolve the image and list its lowerdirs once per container, as `rade run` does."""
    from engine.images.store import ImageStore

    start = time.perf_counter()
    for _ in range(containers):
        dirs = ImageStore(str(root)).resolve(reference).layer_dirs()
        assert dirs
    return time.perf_counter() - start


def small_image(root: Path, work: Path, layers: int) -> None:
    """An image with as many layers as the big one but a few bytes in each, tagged bench:small."""
    small = work / "small"
    small.mkdir()
    archive, _, _ = make_archive(small, 4 * layers, layers, "bench:small")
    subprocess.run([*RADE, "--root", str(root), "load", "-q", "-i", str(archive)], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rade-bench-images-"))
    try:
        archive, layers, files = make_archive(work, args.mb << 20, args.layers)
        size_mb = archive.stat().st_size / 1e6
        tar_times, rade_times, tar_cpu, rade_cpu = [], [], [], []
        for i in range(args.rounds + 1):
            tar_dest, root = work / "tar-out", work / "root"
            t_tar, c_tar = time_tar(layers, tar_dest)
            t_rade, c_rade = time_rade_load(archive, root)
            if i > 0:  # the first round warms the page cache and the interpreter's files
                tar_times.append(t_tar)
                rade_times.append(t_rade)
                tar_cpu.append(c_tar)
                rade_cpu.append(c_rade)
            shutil.rmtree(tar_dest)
            if i < args.rounds:
                shutil.rmtree(root)
        small_image(root, work, args.layers)
        big_runs, small_runs = [], []
        for _ in range(15):  # alternating, so a busy moment of the machine hits both alike
            big_runs.append(time_lowerdirs(root, "bench:big"))
            small_runs.append(time_lowerdirs(root, "bench:small"))
        big_lower, small_lower = statistics.median(big_runs), statistics.median(small_runs)
        shutil.rmtree(root)
        tar_med, rade_med = statistics.median(tar_times), statistics.median(rade_times)
        print(f"# image store: {size_mb:.0f} MB docker-archive, {args.layers} layers, {files} files; "
              f"medians of {args.rounds} alternating rounds")
        print(f"{'what':44} {'median':>10} {'min':>10} {'max':>10} {'CPU':>10}")
        for name, times, cpu in ((f"tar -x of the {args.layers} layer tars", tar_times, tar_cpu),
                                 ("rade load -i (docker-archive)", rade_times, rade_cpu)):
            print(f"{name:44} {statistics.median(times):9.3f}s {min(times):9.3f}s {max(times):9.3f}s "
                  f"{statistics.median(cpu):9.3f}s")
        print(f"{'lowerdirs for 100 containers, big image':44} {big_lower * 1e3:8.2f}ms")
        print(f"{'lowerdirs for 100 containers, tiny image':44} {small_lower * 1e3:8.2f}ms")
        print(f"ratio rade/tar load {rade_med / tar_med:.3f}")
        print(f"ratio rade/tar load-cpu {statistics.median(rade_cpu) / statistics.median(tar_cpu):.3f}")
        print(f"ratio big/small lowerdirs {big_lower / small_lower:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
