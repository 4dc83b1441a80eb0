"""`rade build` against real containers: every instruction, the step cache (a rebuild is all cache hits),
a changed COPY rebuilding from that step, a failing RUN, and build args."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

CONTAINERFILE = """\
ARG GREETING=hi
FROM busybox
ENV APP=/app MODE=test
WORKDIR $APP
COPY greeting.txt .
COPY sub/ ./sub/
RUN echo "building $GREETING" && cat greeting.txt > seen.txt && echo built > built.txt
USER 0:0
LABEL org.example.test=yes
EXPOSE 8080
ENTRYPOINT ["cat"]
CMD ["/app/built.txt"]
"""


@pytest.fixture
def context(tmp_path):
    (tmp_path / "Containerfile").write_text(CONTAINERFILE)
    (tmp_path / "greeting.txt").write_text("hello\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("a\n")
    (tmp_path / "secret.key").write_text("no\n")
    (tmp_path / ".dockerignore").write_text("*.key\n")
    return tmp_path


def test_build_runs_every_step_and_caches_them(rade, context):
    try:
        first = rade("build", "-t", "built-test:v1", "--build-arg", "GREETING=hey", str(context)).stdout.decode()
        assert "building hey" in first and "Successfully tagged built-test:v1" in first
        assert rade.out("run", "--rm", "--network", "none", "built-test:v1") == "built"
        listing = rade.out("run", "--rm", "--network", "none", "--entrypoint", "ls", "built-test:v1", "-a", "/app")
        assert "greeting.txt" in listing and "sub" in listing and "secret.key" not in listing
        config = json.loads(rade.out("inspect", "built-test:v1"))[0]["Config"]
        assert config["Labels"]["org.example.test"] == "yes" and "8080/tcp" in config["ExposedPorts"]
        assert "APP=/app" in config["Env"] and config["WorkingDir"] == "/app"

        again = rade("build", "-t", "built-test:v1", "--build-arg", "GREETING=hey", str(context)).stdout.decode()
        assert again.count("Using cache") == CONTAINERFILE.count("\n") - 2  # all but ARG and FROM
        assert "building hey" not in again

        (context / "sub" / "a.txt").write_text("changed\n")
        changed = rade("build", "-t", "built-test:v2", "--build-arg", "GREETING=hey", str(context)).stdout.decode()
        steps = changed.split("STEP ")
        assert "Using cache" in steps[5]  # COPY greeting.txt: unchanged
        assert "Using cache" not in steps[6] and "building hey" in changed  # COPY sub/ and all after it
        fresh = rade("build", "--no-cache", "-t", "built-test:v2", "--build-arg", "GREETING=hey",
                     str(context)).stdout.decode()
        assert "Using cache" not in fresh and "building hey" in fresh
    finally:
        rade("rmi", "built-test:v1", check=False)
        rade("rmi", "built-test:v2", check=False)


def test_failing_run_stops_the_build_with_its_line(rade, tmp_path):
    (tmp_path / "Containerfile").write_text("FROM busybox\nRUN echo before; exit 4\nCMD true\n")
    result = rade("build", "-t", "broken-test:v1", str(tmp_path), check=False)
    assert result.returncode == 125
    assert b"Containerfile:2: RUN" in result.stderr and b"exited with code 4" in result.stderr
    assert rade("inspect", "broken-test:v1", check=False).returncode != 0


def test_from_scratch_with_copy(rade, tmp_path):
    (tmp_path / "Containerfile").write_text("FROM scratch\nCOPY file /file\nCMD [\"/file\"]\n")
    (tmp_path / "file").write_text("x")
    try:
        rade("build", "-t", "scratch-test:v1", str(tmp_path))
        history = json.loads(rade.out("inspect", "scratch-test:v1"))[0]
        assert history["Config"]["Cmd"] == ["/file"]
    finally:
        rade("rmi", "scratch-test:v1", check=False)


def test_add_unpacks_a_local_archive_and_shell_changes_run(rade, tmp_path):
    import tarfile

    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "inside.txt").write_text("from the archive\n")
    with tarfile.open(tmp_path / "files.tar.gz", "w:gz") as tar:
        tar.add(payload / "inside.txt", arcname="inside.txt")
    (tmp_path / "Containerfile").write_text(
        'FROM busybox\nADD files.tar.gz /opt/\nSHELL ["/bin/sh", "-ec"]\nRUN cat /opt/inside.txt > /opt/copy.txt\n')
    try:
        rade("build", "-t", "add-test:v1", str(tmp_path))
        assert rade.out("run", "--rm", "--network", "none", "add-test:v1", "cat", "/opt/copy.txt") == "from the archive"
    finally:
        rade("rmi", "add-test:v1", check=False)
