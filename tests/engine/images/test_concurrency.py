"""Several processes using one store at once: loads of the same image both succeed and store it once."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from engine.images.formats import save_images
from engine.images.store import ImageStore


@pytest.mark.root
@pytest.mark.slow
def test_processes_loading_the_same_image_at_once_store_it_once(store, state_root, kit, tmp_path) -> None:
    rng = random.Random(7)
    layers = [kit.tar([kit.file(f"l{i}/f{j}", rng.randbytes(rng.randrange(1, 200_000))) for j in range(40)])
              for i in range(4)]
    source = ImageStore(str(tmp_path / "source"))
    image = kit.image(source, layers, tag="shared:1")
    archive = tmp_path / "shared.tar"
    save_images(source, ["shared:1"], str(archive))
    loaders = [subprocess.Popen([sys.executable, "-m", "rade", "--root", state_root, "load", "-i", str(archive)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in loaders]
    for proc in loaders:
        proc.stdout.close()
        proc.stderr.close()
    assert all(code == 0 for code, _, _ in results), results
    assert all(out.strip() == "Loaded image: shared:1" for _, out, _ in results)
    images = store.images()
    assert [i.id for i in images] == [image.id] and images[0].repo_tags == ("shared:1",)
    assert sorted(os.listdir(store.layers.root)) == sorted(d[7:] for d in image.diff_ids)
    assert os.listdir(store.tmp) == []
    for mine, loaded in zip(image.layer_dirs(), images[0].layer_dirs()):
        assert sorted(os.listdir(os.path.join(loaded, os.listdir(loaded)[0]))) == \
            sorted(os.listdir(os.path.join(mine, os.listdir(mine)[0])))


@pytest.mark.root
def test_concurrent_tagging_keeps_every_tag(store, kit) -> None:
    image = kit.image(store, [kit.tar([kit.file("a", b"a")])])
    code = ("import sys; from engine.images.store import ImageStore; s = ImageStore(sys.argv[1]); "
            "i = s.get(sys.argv[2]); [s.tag(i, f'name{sys.argv[3]}:{n}') for n in range(20)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, store.state_root, image.id, str(k)]) for k in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert len(store.get(image.id).repo_tags) == 60
