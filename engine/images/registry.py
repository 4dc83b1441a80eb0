"""An HTTP client for the OCI distribution API: manifests, blobs and uploads, with auth and retries.

One `RegistryClient` talks to one registry. It keeps a small pool of kept-alive connections (several
layers download at once, each on its own connection), answers 401 challenges itself (Basic, or Bearer
tokens per repository scope, fetched from the token server the challenge names), follows redirects
(blob storage often lives elsewhere; the Authorization header is not sent to another host), and turns
every failure into a `RegistryError` that says which registry, what and why. Registries on loopback
are spoken to over plain HTTP (Docker's rule for localhost); all others over HTTPS, verified unless
`tls_verify=False`. What a pull or a push does with these calls lives in `engine.images.transfer`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, Self

from engine.errors import RegistryError
from engine.images import auth
from engine.images.auth import Challenge, Credentials, Token
from engine.images.connections import ConnectionPool, Response

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
_MAX_REDIRECTS = 5
_RETRIES = 3
# Answers that mean "busy, ask again": reads are retried a few times, after Retry-After when given.
_BUSY = (429, 502, 503, 504)
_BUSY_RETRIES = 3
_MAX_RETRY_AFTER = 10.0
USER_AGENT = "rade"


class RegistryUnreachable(RegistryError):
    """The registry could not be reached or the connection broke: worth another try, unlike a refusal."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a registry named in a reference is reached: scheme and host[:port] of its API."""

    registry: str
    scheme: str
    host: str
    tls_verify: bool = True


def endpoint_for(registry: str, tls_verify: bool = True) -> Endpoint:
    """The endpoint for a registry name: HTTP for loopback (any port), HTTPS otherwise."""
    hostname = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    is_loopback = hostname in _LOOPBACK_HOSTS or hostname.startswith("127.")
    host = _DOCKER_HUB_API if registry in (DOCKER_HUB, "index.docker.io") else registry
    return Endpoint(registry=registry, scheme="http" if is_loopback else "https", host=host,
                    tls_verify=tls_verify)


class RegistryClient:
    """Requests to one registry's /v2/ API, authenticated as needed."""

    def __init__(self, endpoint: Endpoint, credentials: Credentials | None = None,
                 timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.endpoint = endpoint
        self._sleep = sleep
        self.credentials = credentials
        self._pool = ConnectionPool(endpoint.tls_verify, timeout)
        self._challenge: Challenge | None = None
        self._tokens: dict[str, Token] = {}
        self._auth_lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API request, for reports

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API calls ------------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: check the registry speaks the API and the credentials (if any) are accepted."""
        resp = self.request("GET", "/v2/", scope=None)
        if resp.status != 200:
            raise self._error(resp, "the registry's API check (/v2/)")

    def get_manifest(self, repository: str, reference: str, accept: Iterable[str]) -> tuple[bytes, str, str]:
        """The manifest bytes, Content-Type and digest (computed here, checked against a digest reference)."""
        resp = self.request("GET", f"/v2/{repository}/manifests/{reference}", scope=repository,
                            headers={"Accept": ", ".join(accept)})
        if resp.status != 200:
            raise self._error(resp, f"{repository}:{reference}" if ":" not in reference
                              else f"{repository}@{reference}")
        digest = "sha256:" + hashlib.sha256(resp.body).hexdigest()
        if reference.startswith("sha256:") and reference != digest:
            raise RegistryError(f"{self.endpoint.registry} sent a manifest for {repository}@{reference} "
                                f"whose digest is {digest}", "the registry's storage may be corrupt")
        return resp.body, resp.header("Content-Type"), digest

    def blob_size(self, repository: str, digest: str, push: bool = False) -> int | None:
        """HEAD a blob: its size if the registry has it, None if not (`push`: ask for a push token now)."""
        resp = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", scope=repository, push=push)
        if resp.status == 200:
            return int(resp.header("Content-Length") or 0)
        if resp.status == 404:
            return None
        raise self._error(resp, f"blob {digest} of {repository}")

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> Response:
        """GET a blob as a stream, from `offset` (a 206 if the server honoured the Range, else a 200)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.request("GET", f"/v2/{repository}/blobs/{digest}", scope=repository, headers=headers,
                            stream=True)
        if resp.status not in (200, 206):
            resp.close()
            raise self._error(resp, f"blob {digest} of {repository}")
        return resp

    def start_upload(self, repository: str, mount: tuple[str, str] | None = None) -> str | None:
        """POST an upload session and return its URL; with `mount` (digest, from_repository) first try a
        cross-repository mount and return None when the registry mounted the blob."""
        path = f"/v2/{repository}/blobs/uploads/"
        if mount:
            path += "?" + urllib.parse.urlencode({"mount": mount[0], "from": mount[1]})
        resp = self.request("POST", path, scope=repository, push=True, body=b"")
        if mount and resp.status == 201:
            return None
        if resp.status != 202 or not resp.header("Location"):
            raise self._error(resp, f"starting an upload to {repository}")
        return urllib.parse.urljoin(resp.url, resp.header("Location"))

    def upload_chunk(self, repository: str, url: str, body: BinaryIO, start: int, length: int) -> str:
        """PATCH one chunk of an upload; returns the URL for the next request."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                   "Content-Range": f"{start}-{start + length - 1}"}
        resp = self.request("PATCH", url, scope=repository, push=True, headers=headers, body=body)
        if resp.status != 202:
            raise self._error(resp, f"uploading to {repository}")
        return urllib.parse.urljoin(resp.url, resp.header("Location") or url)

    def finish_upload(self, repository: str, url: str, digest: str, body: BinaryIO | bytes = b"",
                      length: int = 0) -> None:
        """PUT the end of an upload (the whole blob for a monolithic one) with its digest."""
        separator = "&" if urllib.parse.urlsplit(url).query else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        resp = self.request("PUT", f"{url}{separator}digest={urllib.parse.quote(digest)}", scope=repository,
                            push=True, headers=headers, body=body)
        if resp.status != 201:
            raise self._error(resp, f"blob {digest} uploaded to {repository}")

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or digest; returns the digest the registry gives it."""
        resp = self.request("PUT", f"/v2/{repository}/manifests/{reference}", scope=repository, push=True,
                            headers={"Content-Type": media_type}, body=body)
        if resp.status != 201:
            raise self._error(resp, f"the manifest of {repository}:{reference}")
        return resp.header("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()

    # -- requests, auth, redirects --------------------------------------------------------------------

    def request(self, method: str, target: str, *, scope: str | None, push: bool = False,
                headers: dict[str, str] | None = None, body: bytes | BinaryIO | None = None,
                stream: bool = False) -> Response:
        """One API request: authenticated, redirected, retried once when the first answer is a 401.

        `target` is a path on the registry or an absolute URL (an upload Location). A file body must be
        seekable, since a 401 or a dropped kept-alive connection means sending it again.
        """
        scopes = [auth.repository_scope(scope, ("pull", "push") if push else ("pull",))] if scope else []
        url = target if "://" in target else f"{self.endpoint.scheme}://{self.endpoint.host}{target}"
        mark = body.tell() if body is not None and not isinstance(body, bytes) else 0
        for attempt in (1, 2):
            sent = {"User-Agent": USER_AGENT, **(headers or {})}
            authorization = self._authorization(scopes)
            if authorization:
                sent["Authorization"] = authorization
            resp = self._follow(method, url, sent, body, stream)
            if resp.status != 401 or attempt == 2:
                return resp
            resp.close()
            # The challenge names the scopes this request needs (a mount also needs pull on its source).
            scopes += [s for s in self._answer(resp, scopes) if s not in scopes]
            if body is not None and not isinstance(body, bytes):
                body.seek(mark)
        raise AssertionError("unreachable")

    def _follow(self, method: str, url: str, headers: dict[str, str], body: bytes | BinaryIO | None,
                stream: bool) -> Response:
        """Send, following redirects of reads, and trying a read again when the registry is busy."""
        redirects, busy = 0, 0
        while True:
            resp = self._send(method, url, headers, body, stream)
            if method not in ("GET", "HEAD"):
                return resp
            if resp.status in _BUSY and busy < _BUSY_RETRIES:
                resp.close()
                self._sleep(_retry_delay(resp.header("Retry-After"), busy))
                busy += 1
                continue
            if resp.status not in (301, 302, 303, 307, 308):
                return resp
            resp.close()
            redirects += 1
            if redirects > _MAX_REDIRECTS:
                raise RegistryError(f"{self.endpoint.registry} redirected {url} too many times")
            target = urllib.parse.urljoin(url, resp.header("Location"))
            if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(url).netloc:
                headers = {k: v for k, v in headers.items() if k != "Authorization"}
            url = target

    def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | BinaryIO | None,
              stream: bool) -> Response:
        parts = urllib.parse.urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.requests.append((method, parts.path))
        mark = body.tell() if body is not None and not isinstance(body, bytes) else 0
        for attempt in range(_RETRIES):
            conn, reused = self._pool.take(parts.scheme, parts.netloc)
            try:
                conn.request(method, path, body=body, headers=headers)
                raw = conn.getresponse()
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                # A kept-alive connection the server already closed fails at once: try a fresh one.
                if (reused or isinstance(err, (ConnectionResetError, http.client.RemoteDisconnected))) \
                        and attempt + 1 < _RETRIES:
                    if body is not None and not isinstance(body, bytes):
                        body.seek(mark)
                    continue
                raise self._unreachable(err) from None

            def release(reusable: bool, conn: http.client.HTTPConnection = conn,
                        raw: http.client.HTTPResponse = raw) -> None:
                if reusable and raw.isclosed() and not raw.will_close:
                    self._pool.give(parts.scheme, parts.netloc, conn)
                else:
                    conn.close()

            if stream and raw.status in (200, 206):
                return Response(raw.status, raw.headers, b"", url, raw, release)
            try:
                data = raw.read()  # for a HEAD, b"": reading marks the connection free for reuse
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                raise self._unreachable(err) from None
            release(True)
            return Response(raw.status, raw.headers, data, url)
        raise AssertionError("unreachable")

    def _authorization(self, scopes: list[str]) -> str | None:
        with self._auth_lock:
            challenge = self._challenge
            if challenge is None:
                return None
            if challenge.scheme == "basic":
                return self.credentials.basic_header() if self.credentials else None
            key = " ".join(scopes)
            token = self._tokens.get(key)
            if token is None or not token.is_fresh(time.monotonic()):
                token = self._fetch_token(challenge, scopes)
                self._tokens[key] = token
            return f"Bearer {token.value}"

    def _answer(self, resp: Response, scopes: list[str]) -> list[str]:
        """Learn the scheme from a 401 (the first one, or a token without the scope needed) for the retry;
        return the scopes the challenge asks for."""
        challenges = auth.parse_challenges(resp.header("WWW-Authenticate"))
        if not challenges:
            raise self._error(resp, "the request")
        challenge = auth.pick_challenge(challenges)
        with self._auth_lock:
            if challenge.scheme == "basic" and self._challenge is not None \
                    and self._challenge.scheme == "basic":
                raise self._denied()
            self._challenge = Challenge("bearer", {k: v for k, v in challenge.params.items() if k != "scope"}) \
                if challenge.scheme == "bearer" else challenge
            self._tokens.pop(" ".join(scopes), None)
            if challenge.scheme == "basic" and self.credentials is None:
                raise self._denied()
        return challenge.params.get("scope", "").split()

    def _fetch_token(self, challenge: Challenge, scopes: list[str]) -> Token:
        url = auth.token_url(challenge, scopes)
        headers = {"Authorization": self.credentials.basic_header()} if self.credentials else {}
        resp = self._follow("GET", url, headers, None, False)
        if resp.status in (401, 403):
            raise self._denied()
        if resp.status != 200:
            raise RegistryError(f"the token server of {self.endpoint.registry} answered HTTP {resp.status}")
        return auth.parse_token_response(resp.body)

    # -- errors ---------------------------------------------------------------------------------------

    def _denied(self) -> RegistryError:
        registry = self.endpoint.registry
        if self.credentials:
            return RegistryError(f"{registry} refused the login of user {self.credentials.username!r}",
                                 f"check the user name and password: rade login {registry}")
        return RegistryError(f"{registry} requires a login", f"run: rade login {registry}")

    def _unreachable(self, err: Exception) -> RegistryError:
        registry = self.endpoint.registry
        if isinstance(err, ssl.SSLError):
            return RegistryError(f"TLS with {registry} failed: {err}",
                                 "if the registry has no valid certificate, use --tls-verify=false")
        hint = "is the registry running, and is the address right?"
        return RegistryUnreachable(f"cannot reach the registry {registry}: {err or type(err).__name__}", hint)

    def _error(self, resp: Response, what: str) -> RegistryError:
        """A RegistryError for an unexpected answer, with the registry's own error codes when it sent any."""
        registry = self.endpoint.registry
        codes, detail = _registry_errors(resp.body)
        if resp.status == 404 or codes & set(_NOT_FOUND):
            why = ", ".join(_NOT_FOUND.get(code, code) for code in sorted(codes)) or "not found"
            return RegistryError(f"{registry} has no {what} ({why})", "check the name and tag")
        if resp.status == 401:
            if self.credentials and self._challenge is not None and self._challenge.scheme == "bearer":
                # The token server took the login but did not grant what the request needed.
                return RegistryError(f"{registry} did not grant user {self.credentials.username!r} access to "
                                     f"{what}", "check that this login may read (or write) that repository")
            return self._denied()
        if resp.status == 403 or "DENIED" in codes:
            return RegistryError(f"{registry} denied access to {what}: {detail or 'forbidden'}",
                                 "check that this login may read (or write) that repository")
        text = detail or resp.body[:200].decode("utf-8", "replace").strip() or resp.headers.get("Status", "")
        return RegistryError(f"{registry} answered HTTP {resp.status} for {what}: {text}")


def _retry_delay(retry_after: str, attempt: int) -> float:
    """Seconds to wait before asking a busy registry again: its Retry-After (in seconds) if it sent one,
    capped, else 0.5 s doubling with each attempt."""
    try:
        return min(max(float(retry_after), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        return 0.5 * 2 ** attempt


_NOT_FOUND = {"MANIFEST_UNKNOWN": "no such tag or digest", "NAME_UNKNOWN": "no such repository",
              "BLOB_UNKNOWN": "no such blob"}


def _registry_errors(body: bytes) -> tuple[set[str], str]:
    """The codes and messages of a distribution-spec error body (`{"errors": [{code, message}]}`)."""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return set(), ""
    codes = {str(e.get("code")) for e in errors if isinstance(e, dict)}
    messages = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message"))
    return codes, messages
