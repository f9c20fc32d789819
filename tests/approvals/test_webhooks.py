"""Standard Webhooks signing and verification, and the outbound URL policy."""

from __future__ import annotations

import pytest

from approvals.webhooks import (
    UnsafeUrl,
    WebhookVerificationError,
    check_url,
    check_url_syntax,
    is_public_address,
    new_secret,
    sign,
    signed_headers,
    verify,
)

# The example of the Standard Webhooks specification, so receivers using its libraries verify our bodies.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_specification_example() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = signed_headers(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 10)


def test_verification_refuses_tampering_replay_and_other_secrets() -> None:
    headers = signed_headers(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    now = SPEC_TIMESTAMP
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(SPEC_SECRET, headers, SPEC_BODY.replace(b"2432232314", b"2432232315"), now=now)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(SPEC_SECRET, {**headers, "webhook-id": "msg_other"}, SPEC_BODY, now=now)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(new_secret(), headers, SPEC_BODY, now=now)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(SPEC_SECRET, headers, SPEC_BODY, now=now + 301)
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify(SPEC_SECRET, {"webhook-id": SPEC_ID}, SPEC_BODY, now=now)
    # Several signatures (a rotated secret) are space-separated; one match is enough. Header case is free.
    both = {k.upper(): v for k, v in headers.items()}
    both["WEBHOOK-SIGNATURE"] = f"v1,AAAA {headers['webhook-signature']}"
    verify(SPEC_SECRET, both, SPEC_BODY, now=now)


def test_secrets_are_fresh_and_well_formed() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("whsec_") and len(a) > 40


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_url_syntax() -> None:
    assert check_url_syntax("https://hooks.example.com/x?y=1") == ("hooks.example.com", 443)
    assert check_url_syntax("http://hooks.example.com:8080/") == ("hooks.example.com", 8080)
    for url in (
        "ftp://x/y",
        "file:///etc/passwd",
        "https://u:p@x.example.com/",
        "http://",
        "https://x:99999/",
    ):
        with pytest.raises(UnsafeUrl):
            check_url_syntax(url)


async def test_private_hosts_are_refused_unless_allowed() -> None:
    with pytest.raises(UnsafeUrl, match="loopback"):
        await check_url("http://localhost:8080/hook", allow_private=False)
    await check_url("http://localhost:8080/hook", allow_private=True)
    with pytest.raises(UnsafeUrl, match="only http and https"):
        await check_url("gopher://localhost/", allow_private=True)
