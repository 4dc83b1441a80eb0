"""Multi-stage `rade build` against real containers: COPY --from a named stage, an index and an image,
FROM an earlier stage, --target, the stages nobody needs never run, the cache of COPY --from, a symlink
in a stage that cannot reach the host, and errors naming the line."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

MULTI = """\
FROM busybox AS builder
RUN mkdir -p /out/lib && echo compiled > /out/app && echo lib > /out/lib/x.so && ln -s app /out/link
FROM busybox AS unused
RUN echo SHOULD-NOT-RUN
FROM builder AS tested
RUN echo tested > /out/tested
FROM scratch
COPY --from=tested /out /opt/
COPY --from=0 /out/app /app-copy
COPY --from=busybox /bin/busybox /bin/busybox
ENTRYPOINT ["/bin/busybox"]
CMD ["cat", "/opt/app", "/opt/tested", "/app-copy"]
"""


def _build(rade, context, *extra: str) -> str:
    return rade("build", *extra, str(context)).stdout.decode()


def test_multi_stage_build_copies_from_stages_and_images(rade, tmp_path):
    (tmp_path / "Containerfile").write_text(MULTI)
    out = _build(rade, tmp_path, "-t", "multi-test:v1")
    try:
        assert "SHOULD-NOT-RUN" not in out and "RUN echo SHOULD-NOT-RUN" not in out
        assert rade.out("run", "--rm", "--network", "none", "multi-test:v1") == "compiled\ntested\ncompiled"
        listing = rade.out("run", "--rm", "--network", "none", "multi-test:v1", "ls", "-l", "/opt", "/opt/lib")
        assert "link -> app" in listing and "x.so" in listing

        again = _build(rade, tmp_path, "-t", "multi-test:v1")
        copies = [step for step in again.split("STEP ") if "COPY --from" in step]
        assert len(copies) == 3 and all("Using cache" in step for step in copies)
    finally:
        rade("rmi", "multi-test:v1", check=False)


def test_target_stops_at_a_stage(rade, tmp_path):
    (tmp_path / "Containerfile").write_text(MULTI)
    out = _build(rade, tmp_path, "-t", "multi-test:builder", "--target", "builder")
    try:
        assert "COPY --from" not in out and "echo tested" not in out
        assert rade.out("run", "--rm", "--network", "none", "multi-test:builder", "cat", "/out/app") == "compiled"
        missing = rade("run", "--rm", "--network", "none", "multi-test:builder", "cat", "/out/tested", check=False)
        assert missing.returncode == 1
    finally:
        rade("rmi", "multi-test:builder", check=False)
    bad = rade("build", "--target", "nope", str(tmp_path), check=False)
    assert bad.returncode == 125 and b"no stage named 'nope'" in bad.stderr


def test_copy_from_a_stage_resolves_its_symlinks_inside_the_stage(rade, tmp_path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host only\n")
    (tmp_path / "Containerfile").write_text(f"""\
FROM busybox AS evil
RUN ln -s {secret} /leak && ln -s {tmp_path} /leakdir
FROM busybox
COPY --from=evil /leak /got
""")
    result = rade("build", str(tmp_path), check=False)
    err = result.stderr.decode()
    assert result.returncode == 125 and err.count("\n") == 1
    assert "no such file in the source image" in err and "Containerfile:4" in err
    (tmp_path / "Containerfile").write_text("FROM busybox AS evil\nRUN true\nFROM busybox\n"
                                            "COPY --from=evil /leakdir/host-secret.txt /got\n")
    assert rade("build", str(tmp_path), check=False).returncode == 125


def test_copy_from_errors_name_the_line(rade, tmp_path):
    cases = {
        # Not local, so pulled (as docker build does): from a loopback port where no registry listens.
        "FROM busybox\nCOPY --from=127.0.0.1:1/nowhere /a /b\n":
            "Containerfile:2: --from=127.0.0.1:1/nowhere is neither a stage before this one nor a local image, "
            "and pulling it failed",
        "FROM busybox AS one\nCOPY --from=two /a /b\nFROM busybox AS two\nFROM one\n": "names a later stage",
        "FROM busybox AS a\nRUN true\nFROM busybox\nCOPY --from=a /no/such /x\n": "/no/such: no such file",
        "FROM busybox\nADD --from=busybox /bin/sh /sh\n": "ADD takes no --from",
    }
    for text, expected in cases.items():
        (tmp_path / "Containerfile").write_text(text)
        result = rade("build", str(tmp_path), check=False)
        err = result.stderr.decode()
        assert result.returncode == 125 and expected in err and err.count("\n") == 1, (text, err)


def test_global_args_name_the_base_and_a_bare_arg_takes_the_global_default(rade, tmp_path):
    (tmp_path / "Containerfile").write_text("""\
ARG BASE=busybox
ARG V=global
FROM $BASE AS first
ARG V
RUN echo "v=$V" > /v
FROM first
ARG V=local
RUN cat /v > /both && echo "v=$V" >> /both
CMD ["cat", "/both"]
""")
    rade("build", "-t", "multi-test:args", str(tmp_path))
    try:
        assert rade.out("run", "--rm", "--network", "none", "multi-test:args") == "v=global\nv=local"
        rade("build", "-t", "multi-test:args", "--build-arg", "V=given", str(tmp_path))
        assert rade.out("run", "--rm", "--network", "none", "multi-test:args") == "v=given\nv=given"
    finally:
        rade("rmi", "multi-test:args", check=False)
