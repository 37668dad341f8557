"""OATH CSV and PSKC parsers: good files, every kind of bad row (with where it is), short seeds,
duplicate serials, encrypted PSKC, and defusedxml refusing entity tricks."""

from __future__ import annotations

import base64

import pytest

from syncd.domain import token_files
from syncd.domain.token_files import decode_secret, parse_csv, parse_pskc

SEED = bytes(range(20))  # 160 bits
HEX = SEED.hex()
B32 = base64.b32encode(SEED).decode().rstrip("=")


def test_good_csv_with_header_comments_blank_lines_and_defaults() -> None:
    text = (
        "serial,secret,type,digits,period,algorithm\n"
        "# a comment\n"
        f"HW-1,{HEX},HOTP,6,5,SHA1\n"
        "\n"
        f"HW-2,{B32.lower()},TOTP,8,60,sha256\n"
        f"HW-3,{B32}\n"
        f"HW-4,hex:{HEX},totp,,,\n"
    )
    parsed = parse_csv(text)
    assert parsed.problems == []
    one, two, three, four = parsed.tokens
    assert (one.serial, one.otp_type, one.digits, one.counter, one.secret) == ("HW-1", "HOTP", 6, 5, SEED)
    assert (two.otp_type, two.digits, two.period, two.algorithm, two.secret) == (
        "TOTP",
        8,
        60,
        "SHA256",
        SEED,
    )
    assert (three.otp_type, three.digits, three.period, three.algorithm) == ("TOTP", 6, 30, "SHA1")
    assert four.secret == SEED and four.where == "line 7"


def test_secret_decoding_rules() -> None:
    assert decode_secret(HEX) == SEED
    assert decode_secret(B32) == SEED
    assert decode_secret(f"base32:{B32}") == SEED
    assert decode_secret("ABCD EFGH") == base64.b32decode("ABCDEFGH")
    with pytest.raises(ValueError):
        decode_secret("not a secret!")
    with pytest.raises(ValueError):
        decode_secret("hex:abc")


def test_every_bad_csv_row_is_reported_with_its_line_number() -> None:
    short = bytes(15).hex()  # 120 bits
    text = "\n".join(
        [
            "serial,secret,type,digits,period,algorithm",
            f"OK-1,{HEX},TOTP,6,30,SHA1",  # line 2: good
            f"SHORT,{short},TOTP,6,30,SHA1",  # 3
            "BADSECRET,!!!!,TOTP,6,30,SHA1",  # 4
            f"BADTYPE,{HEX},MOTP,6,30,SHA1",  # 5
            f"BADDIGITS,{HEX},TOTP,9,30,SHA1",  # 6
            f"BADPERIOD,{HEX},TOTP,6,abc,SHA1",  # 7
            f"BADALG,{HEX},TOTP,6,30,MD5",  # 8
            f"bad serial,{HEX},TOTP,6,30,SHA1",  # 9
            "ONLYSERIAL",  # 10
            f"OK-1,{HEX},TOTP,6,30,SHA1",  # 11: duplicate of line 2
            f"NEGCOUNTER,{HEX},HOTP,6,-1,SHA1",  # 12
            f"LONG,{bytes(65).hex()},TOTP,6,30,SHA1",  # 13
        ]
    )
    parsed = parse_csv(text)
    assert [t.serial for t in parsed.tokens] == ["OK-1"]
    problems = "\n".join(parsed.problems)
    for expected in (
        "line 3: seed is 120 bits, at least 128 are required",
        "line 4: secret is neither hex nor base32",
        "line 5: type 'MOTP' is not HOTP or TOTP",
        "line 6: digits 9 is outside 6..8",
        "line 7: period 'abc' is not a number",
        "line 8: algorithm 'MD5' is not one of SHA1, SHA256, SHA512",
        "line 9: serial 'bad serial' must be",
        "line 10: expected 2 to 6 columns",
        "line 11: serial 'OK-1' duplicates line 2",
        "line 12: counter -1 is outside",
        "line 13: seed is 520 bits, at most 512 are allowed",
    ):
        assert expected in problems
    assert len(parsed.problems) == 11
    message = token_files.describe(parsed.problems)
    assert message.startswith("token file refused, nothing imported (11 problem(s)): line 3:")


def test_an_empty_file_is_a_problem() -> None:
    assert parse_csv("serial,secret\n").problems == ["the file holds no tokens"]
    assert token_files.parse("x", "zip").problems == ["unknown format 'zip': expected csv or pskc"]


def pskc(*packages: str, extra: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc">'
        f"{extra}{''.join(packages)}</KeyContainer>"
    )


def package(
    serial: str | None,
    secret: bytes | None = SEED,
    *,
    algorithm: str = "urn:ietf:params:xml:ns:keyprov:pskc:hotp",
    length: int = 6,
    counter: str | None = "7",
    interval: str | None = None,
    suite: str | None = None,
    encrypted: bool = False,
) -> str:
    device = f"<DeviceInfo><Manufacturer>Acme</Manufacturer><SerialNo>{serial}</SerialNo></DeviceInfo>"
    value = (
        "<EncryptedValue><CipherData><CipherValue>AAAA</CipherValue></CipherData></EncryptedValue>"
        if encrypted
        else f"<PlainValue>{base64.b64encode(secret).decode() if secret is not None else ''}</PlainValue>"
    )
    data = f"<Secret>{value}</Secret>"
    if counter is not None:
        data += f"<Counter><PlainValue>{counter}</PlainValue></Counter>"
    if interval is not None:
        data += f"<TimeInterval><PlainValue>{interval}</PlainValue></TimeInterval>"
    params = f"<AlgorithmParameters>{f'<Suite>{suite}</Suite>' if suite else ''}"
    params += f'<ResponseFormat Length="{length}" Encoding="DECIMAL"/></AlgorithmParameters>'
    return (
        f"<KeyPackage>{device if serial is not None else ''}"
        f'<Key Id="k-{serial}" Algorithm="{algorithm}">{params}<Data>{data}</Data></Key></KeyPackage>'
    )


def test_good_pskc_hotp_and_totp() -> None:
    text = pskc(
        package("987654321"),
        package(
            "TOTP-1",
            algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp",
            length=8,
            counter=None,
            interval="60",
            suite="HMAC-SHA256",
        ),
    )
    parsed = parse_pskc(text)
    assert parsed.problems == []
    hotp, totp = parsed.tokens
    assert (hotp.serial, hotp.otp_type, hotp.counter, hotp.digits, hotp.secret) == (
        "987654321",
        "HOTP",
        7,
        6,
        SEED,
    )
    assert (totp.otp_type, totp.period, totp.digits, totp.algorithm) == ("TOTP", 60, 8, "SHA256")


def test_bad_pskc_packages_are_reported_by_index_and_serial() -> None:
    text = pskc(
        package("GOOD"),
        package("SHORT", bytes(10)),  # 2
        package("NOSECRET", None),  # 3
        package("ALG", algorithm="urn:example:ocra"),  # 4
        package("GOOD"),  # 5 duplicate
        package("DIG", length=4),  # 6
        package("ENC", encrypted=True),  # 7
    )
    parsed = parse_pskc(text)
    assert [t.serial for t in parsed.tokens] == ["GOOD"]
    problems = "\n".join(parsed.problems)
    assert "KeyPackage 2 (serial 'SHORT'): seed is 80 bits, at least 128 are required" in problems
    assert "KeyPackage 3 (serial 'NOSECRET'): Secret/PlainValue is missing or not base64" in problems
    assert "KeyPackage 4 (serial 'ALG'): type" in problems
    assert "KeyPackage 5 (serial 'GOOD'): serial 'GOOD' duplicates KeyPackage 1" in problems
    assert "KeyPackage 6 (serial 'DIG'): digits 4 is outside 6..8" in problems
    assert (
        "KeyPackage 7 (serial 'ENC'): the secret is encrypted (EncryptedValue), which is not supported"
        in problems
    )


def test_encrypted_container_and_non_pskc_xml_are_refused_clearly() -> None:
    encrypted = pskc(package("A"), extra="<EncryptionKey><KeyName>PSK</KeyName></EncryptionKey>")
    assert (
        "encrypted PSKC (EncryptionKey/EncryptedValue) is not supported" in parse_pskc(encrypted).problems[0]
    )
    assert "not a PSKC KeyContainer" in parse_pskc("<Other/>").problems[0]
    assert parse_pskc("<KeyContainer").problems[0].startswith("not well-formed XML")
    assert parse_pskc(pskc()).problems == ["the file holds no KeyPackage"]


def test_defusedxml_refuses_an_entity_expansion_bomb_and_external_entities() -> None:
    bomb = (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n]>\n'
        '<KeyContainer xmlns="urn:ietf:params:xml:ns:keyprov:pskc">'
        "<KeyPackage>&lol3;</KeyPackage></KeyContainer>"
    )
    parsed = parse_pskc(bomb)
    assert parsed.tokens == [] and parsed.problems[0].startswith("refused: the XML uses a DTD or entities")
    external = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        '<KeyContainer xmlns="urn:ietf:params:xml:ns:keyprov:pskc">&e;</KeyContainer>'
    )
    assert parse_pskc(external).problems[0].startswith("refused:")
