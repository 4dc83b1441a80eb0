"""Random damage to a tar that holds escape attempts never gets anything written outside the layer:
each mutated archive is either refused (an ImageError, never a crash) or unpacked inside its target."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ImageError
from engine.images.tarsplit import SplitRecorder
from engine.images.unpack import unpack_layer, unpack_region


def seed_tar(kit, outside: str) -> bytes:
    """A tar whose entries sit one byte flip away from escapes: '..' names, links out, absolute paths."""
    return kit.tar([
        kit.directory("etc"),
        kit.file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        kit.symlink("up", ".."),
        kit.symlink("abs", outside),
        kit.symlink("lib", "etc"),
        kit.file("lib/through", b"inside"),
        kit.hardlink("etc/hard", "etc/passwd"),
        kit.file("a/b/c/deep", b"x" * 700),
        kit.file(".wh.gone"),
        kit.Entry("xattr", b"v", xattrs={"user.k": "v"}),
    ])


@pytest.mark.root
@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
                      min_size=1, max_size=12),
       cut=st.one_of(st.none(), st.integers(min_value=0)),
       path=st.sampled_from(["blob", "gzip", "archive member"]))
def test_mutated_tarballs_are_refused_or_contained(kit, flips, cut, path) -> None:
    area = tempfile.mkdtemp(prefix="rade-mutation-")
    try:
        outside = os.path.join(area, "outside")
        layer = os.path.join(area, "layer")
        os.mkdir(outside)
        os.mkdir(layer)
        with open(os.path.join(outside, "victim"), "w") as out:
            out.write("untouched")
        data = bytearray(seed_tar(kit, outside))
        for position, value in flips:
            data[position % len(data)] = value
        if cut is not None:
            del data[cut % len(data):]
        blob = gzip.compress(bytes(data)) if path == "gzip" else bytes(data)
        source = os.path.join(area, "in.tar")
        with open(source, "wb") as out:
            if path == "archive member":
                out.write(b"\0" * 1024)  # the tar sits inside a larger file, as in a docker-archive
            out.write(blob)
        try:
            if path == "archive member":
                unpack_region(source, 1024, len(blob), layer, SplitRecorder())
            else:
                unpack_layer(source, layer)
        except ImageError:
            pass
        os.unlink(source)
        assert sorted(os.listdir(area)) == ["layer", "outside"]
        assert os.listdir(outside) == ["victim"]
        with open(os.path.join(outside, "victim")) as src:
            assert src.read() == "untouched"
        for dirpath, dirnames, filenames in os.walk(layer):
            for name in dirnames + filenames:
                real = os.path.realpath(os.path.join(dirpath, name)) if not os.path.islink(
                    os.path.join(dirpath, name)) else os.path.join(os.path.realpath(dirpath), name)
                assert real.startswith(os.path.realpath(layer) + os.sep)
    finally:
        shutil.rmtree(area, ignore_errors=True)
