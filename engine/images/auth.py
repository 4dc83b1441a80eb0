"""Registry authentication as data: WWW-Authenticate challenges, token requests and answers, Basic headers.

A registry answers 401 with a challenge, `Basic realm="..."` or `Bearer realm="...",service="...",
scope="repository:ns/app:pull"`; a Bearer challenge sends the client to a token server (the realm) which
returns a short-lived token for the scopes asked. This module only parses and builds those values (no
sockets), so every quirk of the header grammar is tested without a server; `engine.images.registry`
does the requests.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from dataclasses import dataclass, field

from engine.errors import RegistryError


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password (or identity token) for one registry."""

    username: str
    password: str

    def basic_header(self) -> str:
        """The `Authorization` value for HTTP Basic auth."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One WWW-Authenticate challenge: its scheme (lower case) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and the monotonic time after which it should not be used."""

    value: str
    expires_at: float

    def is_fresh(self, now: float) -> bool:
        return now < self.expires_at


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value into its challenges (RFC 7235: `Scheme k=v, k="v", Scheme2 ...`).

    Quoted values may hold commas (a scope list does), so this walks the string instead of splitting it.
    """
    challenges: list[Challenge] = []
    pos, n = 0, len(header)
    current: Challenge | None = None
    while pos < n:
        while pos < n and header[pos] in " \t,":
            pos += 1
        start = pos
        while pos < n and header[pos] not in " \t,=":
            pos += 1
        token = header[start:pos]
        if not token:
            break
        rest = pos
        while rest < n and header[rest] in " \t":
            rest += 1
        if rest < n and header[rest] == "=" and current is not None:
            pos = rest + 1
            while pos < n and header[pos] in " \t":
                pos += 1
            value, pos = _read_value(header, pos)
            current.params[token.lower()] = value
        else:
            current = Challenge(scheme=token.lower(), params={})
            challenges.append(current)
    return challenges


def _read_value(header: str, pos: int) -> tuple[str, int]:
    """Read a token or a quoted string starting at `pos`; return it and the position after it."""
    if pos < len(header) and header[pos] == '"':
        out: list[str] = []
        pos += 1
        while pos < len(header) and header[pos] != '"':
            if header[pos] == "\\" and pos + 1 < len(header):
                pos += 1
            out.append(header[pos])
            pos += 1
        return "".join(out), pos + 1
    start = pos
    while pos < len(header) and header[pos] not in " \t,":
        pos += 1
    return header[start:pos], pos


def pick_challenge(challenges: list[Challenge]) -> Challenge:
    """The challenge rade answers: Bearer if offered (it scopes access), else Basic."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    offered = ", ".join(c.scheme for c in challenges) or "none"
    raise RegistryError(f"the registry asks for an authentication scheme rade does not speak ({offered})",
                        "rade speaks Bearer tokens and Basic auth")


def repository_scope(repository: str, actions: tuple[str, ...]) -> str:
    """The token scope for actions on one repository, e.g. `repository:library/busybox:pull,push`."""
    return f"repository:{repository}:{','.join(actions)}"


def token_url(challenge: Challenge, scopes: list[str]) -> str:
    """The token server URL to GET for these scopes, from a Bearer challenge's realm and service."""
    realm = challenge.realm
    if not realm.startswith(("http://", "https://")):
        raise RegistryError(f"the registry's token realm {realm!r} is not an http(s) URL")
    query: list[tuple[str, str]] = []
    if challenge.params.get("service"):
        query.append(("service", challenge.params["service"]))
    query.extend(("scope", scope) for scope in scopes)
    if not query:
        return realm
    separator = "&" if urllib.parse.urlsplit(realm).query else "?"
    return realm + separator + urllib.parse.urlencode(query)


# Token servers may omit expires_in; the distribution spec says to assume 60 seconds then.
_DEFAULT_TOKEN_LIFETIME = 60.0


def parse_token_response(body: bytes, now: float | None = None) -> Token:
    """The token in a token server's JSON answer (`token`, or OAuth2's `access_token`)."""
    try:
        answer = json.loads(body)
    except ValueError:
        raise RegistryError("the registry's token server answered something that is not JSON") from None
    if not isinstance(answer, dict):
        raise RegistryError("the registry's token server answered JSON that is not an object")
    value = answer.get("token") or answer.get("access_token")
    if not isinstance(value, str) or not value:
        raise RegistryError("the registry's token server answered without a token")
    lifetime = answer.get("expires_in")
    if not isinstance(lifetime, (int, float)) or lifetime <= 0:
        lifetime = _DEFAULT_TOKEN_LIFETIME
    # Renew a little early so a token does not expire between the check and the request.
    started = time.monotonic() if now is None else now
    return Token(value=value, expires_at=started + max(lifetime - 10, lifetime / 2))
