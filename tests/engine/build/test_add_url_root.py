"""`ADD http://...` in `rade build`, against an HTTP server on 127.0.0.1 that the test runs: the file
lands named by the URL (or as the destination), mode 0600; an unchanged file is a cache hit by its
checksum, a changed one rebuilds the step; --checksum, a 404 and a URL without a file name are refused
in one line."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, Path]]:
    """(base URL, served directory): a server on 127.0.0.1, stopped after the test."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_add_url_downloads_and_caches_by_checksum(rade, server, tmp_path):
    base, served = server
    (served / "data.txt").write_text("version one\n")
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text(f"""\
FROM busybox
ADD {base}/data.txt /srv/
ADD {base}/data.txt /srv/renamed.txt
RUN cat /srv/data.txt /srv/renamed.txt > /seen && stat -c %a /srv/data.txt >> /seen
CMD ["cat", "/seen"]
""")
    try:
        first = rade("build", "-t", "add-url:v1", str(context)).stdout.decode()
        assert "downloaded" in first
        assert rade.out("run", "--rm", "--network", "none", "add-url:v1") == "version one\nversion one\n600"

        again = rade("build", "-t", "add-url:v1", str(context)).stdout.decode()
        assert again.count("Using cache") == 4  # both ADDs (downloaded again, same checksum), RUN, CMD

        (served / "data.txt").write_text("version two\n")
        changed = rade("build", "-t", "add-url:v2", str(context)).stdout.decode()
        assert "Using cache" not in changed
        assert rade.out("run", "--rm", "--network", "none", "add-url:v2") == "version two\nversion two\n600"
    finally:
        rade("rmi", "add-url:v1", "add-url:v2", check=False)


def test_add_url_checksum_and_failures_are_one_line(rade, server, tmp_path):
    base, served = server
    (served / "data.txt").write_text("payload\n")
    good = hashlib.sha256(b"payload\n").hexdigest()
    context = tmp_path / "ctx"
    context.mkdir()
    cases = [
        (f"ADD --checksum=sha256:{good} {base}/data.txt /d.txt", 0, ""),
        (f"ADD --checksum=sha256:{'0' * 64} {base}/data.txt /d.txt", 125, f"the file's sha256 is {good}"),
        (f"ADD {base}/missing.txt /m.txt", 125, "the server answered 404"),
        (f"ADD {base}/ /x", 125, "the URL has no file name"),
        (f"ADD {base}/data.txt Containerfile /x/", 125, "ADD mixes URLs and files of the context"),
    ]
    for line, code, text in cases:
        (context / "Containerfile").write_text(f"FROM busybox\n{line}\n")
        result = rade("build", str(context), check=False)
        err = result.stderr.decode()
        assert result.returncode == code, (line, err)
        if code:
            assert err.startswith("rade: error: ") and err.count("\n") == 1 and text in err, (line, err)
            assert "Containerfile:2" in err
