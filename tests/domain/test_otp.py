"""syncd.domain.otp: RFC 4226/6238 vectors, the window, replay classification, secrets, otpauth URIs."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.domain import otp
from syncd.domain.otp import Check, TotpSettings

SHA1_SEED = b"12345678901234567890"
SHA256_SEED = b"12345678901234567890123456789012"
SHA512_SEED = b"1234567890123456789012345678901234567890123456789012345678901234"


@pytest.mark.parametrize(
    ("counter", "expected"),
    list(enumerate(["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583"])),
)
def test_hotp_rfc4226_appendix_d(counter: int, expected: str) -> None:
    assert otp.hotp(SHA1_SEED, counter) == expected


@pytest.mark.parametrize(
    ("now", "algorithm", "seed", "expected"),
    [
        (59, "SHA1", SHA1_SEED, "94287082"),
        (59, "SHA256", SHA256_SEED, "46119246"),
        (59, "SHA512", SHA512_SEED, "90693936"),
        (1111111109, "SHA1", SHA1_SEED, "07081804"),
        (1111111109, "SHA256", SHA256_SEED, "68084774"),
        (1111111109, "SHA512", SHA512_SEED, "25091201"),
        (1234567890, "SHA1", SHA1_SEED, "89005924"),
        (2000000000, "SHA1", SHA1_SEED, "69279037"),
        (20000000000, "SHA512", SHA512_SEED, "47863826"),
    ],
)
def test_totp_rfc6238_appendix_b(now: int, algorithm: str, seed: bytes, expected: str) -> None:
    settings = TotpSettings(issuer="x", digits=8, algorithm=algorithm)
    assert otp.totp(seed, now, settings) == expected
    assert otp.match_step(seed, expected, now, settings, last_step=None) == otp.StepMatch(
        Check.MATCH, now // 30
    )


def test_window_accepts_exactly_minus_one_to_plus_one_step() -> None:
    settings = TotpSettings(issuer="x", digits=8, window=1)
    code = "07081804"  # step of T=1111111109
    base = 1111111109
    accepted = {
        offset
        for offset in range(-3, 4)
        if otp.match_step(SHA1_SEED, code, base + offset * 30, settings, last_step=None).check is Check.MATCH
    }
    assert accepted == {-1, 0, 1}
    narrow = TotpSettings(issuer="x", digits=8, window=0)
    assert otp.match_step(SHA1_SEED, code, base + 30, narrow, last_step=None).check is Check.WRONG


def test_replay_of_the_accepted_step_and_of_older_steps() -> None:
    settings = TotpSettings(issuer="x")
    now = 1_700_000_000
    step = now // 30
    current = otp.hotp(SHA1_SEED, step)
    previous = otp.hotp(SHA1_SEED, step - 1)
    assert otp.match_step(SHA1_SEED, current, now, settings, last_step=step - 1).check is Check.MATCH
    assert otp.match_step(SHA1_SEED, current, now, settings, last_step=step) == otp.StepMatch(
        Check.REPLAY, step
    )
    # accepted step t, then the still-in-window code of t-1: refused (O1)
    assert otp.match_step(SHA1_SEED, previous, now, settings, last_step=step).check is Check.REPLAY


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12345a", "１２３４５６", "-12345"])
def test_malformed_codes_are_wrong(code: str) -> None:
    assert otp.match_step(SHA1_SEED, code, 0, TotpSettings(issuer="x"), last_step=None).check is Check.WRONG


def test_spaces_in_a_typed_code_are_ignored() -> None:
    code = otp.hotp(SHA1_SEED, 100)
    match = otp.match_step(
        SHA1_SEED, f" {code[:3]} {code[3:]} ", 3000, TotpSettings(issuer="x"), last_step=None
    )
    assert match.check is Check.MATCH


@given(
    st.binary(min_size=20, max_size=64),
    st.integers(min_value=0, max_value=2**33),
    st.sampled_from([6, 8]),
    st.sampled_from(["SHA1", "SHA256", "SHA512"]),
)
def test_agrees_with_pyotp(seed: bytes, now: int, digits: int, algorithm: str) -> None:
    settings = TotpSettings(issuer="x", digits=digits, algorithm=algorithm)
    reference = pyotp.TOTP(base64.b32encode(seed).decode(), digits=digits, digest=algorithm.lower())
    assert otp.totp(seed, now, settings) == reference.at(now)


def test_secrets_are_160_bits_and_unique() -> None:
    made = {otp.new_secret() for _ in range(10_000)}
    assert len(made) == 10_000
    assert {len(s) for s in made} == {20}
    key = otp.b32encode(next(iter(made)))
    assert len(key) == 32 and "=" not in key
    assert otp.b32decode(key.lower()[:4] + " " + key[4:]) in made


def test_otpauth_uri_carries_the_org_settings() -> None:
    settings = TotpSettings(issuer="Example Corp", digits=8, period=60, algorithm="SHA256")
    uri = otp.otpauth_uri(SHA1_SEED, "alice@example.com", settings)
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "otpauth",
        "totp",
        "/Example%20Corp:alice@example.com",
    )
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "secret": otp.b32encode(SHA1_SEED),
        "issuer": "Example Corp",
        "algorithm": "SHA256",
        "digits": "8",
        "period": "60",
    }
    parsed = pyotp.parse_uri(uri)
    assert parsed.issuer == "Example Corp" and parsed.digits == 8 and parsed.interval == 60
