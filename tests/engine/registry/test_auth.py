"""WWW-Authenticate challenges and token answers, read as the distribution token spec describes them."""

from __future__ import annotations

import urllib.parse

import pytest

from engine.errors import RegistryError
from engine.images import auth
from engine.images.auth import Challenge, Credentials


def test_bearer_challenge_keeps_commas_inside_the_quoted_scope() -> None:
    header = ('Bearer realm="https://auth.example.org/token",service="registry.example.org",'
              'scope="repository:ns/app:pull,push"')
    [challenge] = auth.parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.params == {"realm": "https://auth.example.org/token", "service": "registry.example.org",
                                "scope": "repository:ns/app:pull,push"}


def test_several_challenges_in_one_header_are_all_read_and_bearer_is_preferred() -> None:
    challenges = auth.parse_challenges('Basic realm="basic-realm", Bearer realm="https://t/x",service=reg')
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[1].params == {"realm": "https://t/x", "service": "reg"}
    assert auth.pick_challenge(challenges).scheme == "bearer"


def test_escaped_quote_inside_a_quoted_value_is_unescaped() -> None:
    [challenge] = auth.parse_challenges(r'Basic realm="a \"quoted\" realm"')
    assert challenge.realm == 'a "quoted" realm'


def test_an_unknown_scheme_alone_is_refused_with_what_was_offered() -> None:
    with pytest.raises(RegistryError, match="negotiate"):
        auth.pick_challenge(auth.parse_challenges("Negotiate"))


def test_token_url_carries_service_and_every_scope() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example.org/token?x=1", "service": "reg"})
    url = auth.token_url(challenge, [auth.repository_scope("ns/app", ("pull", "push"))])
    parts = urllib.parse.urlsplit(url)
    assert parts.netloc == "auth.example.org"
    assert urllib.parse.parse_qs(parts.query) == {"x": ["1"], "service": ["reg"],
                                                  "scope": ["repository:ns/app:pull,push"]}


def test_a_realm_that_is_not_http_is_refused() -> None:
    with pytest.raises(RegistryError, match="not an http"):
        auth.token_url(Challenge("bearer", {"realm": "file:///etc/passwd"}), [])


def test_token_answer_takes_token_or_access_token_and_expires_early() -> None:
    token = auth.parse_token_response(b'{"token": "abc", "expires_in": 300}', now=1000.0)
    assert token.value == "abc" and token.is_fresh(1289.0) and not token.is_fresh(1291.0)
    oauth = auth.parse_token_response(b'{"access_token": "xyz"}', now=0.0)
    assert oauth.value == "xyz" and oauth.is_fresh(20.0) and not oauth.is_fresh(60.0)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"token": ""}', b"{}"])
def test_a_token_answer_without_a_token_is_a_clear_error(body: bytes) -> None:
    with pytest.raises(RegistryError, match="token server"):
        auth.parse_token_response(body)


def test_basic_header_is_base64_of_user_colon_password() -> None:
    assert Credentials("aladdin", "open sesame").basic_header() == "Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ=="
