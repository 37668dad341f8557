"""Hardware tokens over HTTP (seed 000): import all-or-nothing from OATH CSV and PSKC, list/get without
seeds, assign by serial (one per user), unassign, resync for HOTP and TOTP; check() and
assign_from_pool() in the store, with codes computed by pyotp."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
from harness.admin import Admin
from harness.enrollment import add_user, make_settings

from syncd.domain import otp
from syncd.domain.lifecycle import DeviceState
from syncd.domain.token_files import parse
from syncd.errors import DomainError
from syncd.store import hardware_tokens, token_codes
from syncd.store.db import Database
from syncd.store.tables import Device, HardwareToken, OutboxMessage, User

SEED = bytes(range(1, 21))
B32 = base64.b32encode(SEED).decode()
CSV = (
    "serial,secret,type,digits,period|counter,algorithm\n"
    f"HOTP-1,{SEED.hex()},HOTP,6,0,SHA1\n"
    f"TOTP-1,{B32},TOTP,6,30,SHA1\n"
    f"TOTP-2,{B32},TOTP,8,60,SHA256\n"
)
PSKC = f"""<?xml version="1.0" encoding="UTF-8"?>
<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc">
  <KeyPackage>
    <DeviceInfo><Manufacturer>Acme</Manufacturer><SerialNo>PSKC-1</SerialNo></DeviceInfo>
    <Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp">
      <AlgorithmParameters><ResponseFormat Length="6" Encoding="DECIMAL"/></AlgorithmParameters>
      <Data><Secret><PlainValue>{base64.b64encode(SEED).decode()}</PlainValue></Secret>
        <Counter><PlainValue>0</PlainValue></Counter></Data>
    </Key>
  </KeyPackage>
</KeyContainer>"""
NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def hotp(counter: int) -> str:
    return pyotp.HOTP(B32).at(counter)


def totp(at: datetime, offset_steps: int = 0) -> str:
    return pyotp.TOTP(B32, interval=30).at(at.timestamp() + 30 * offset_steps)


def token_count(admin: Admin) -> int:
    with admin.db.read() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(HardwareToken)) or 0)


def test_import_list_and_get_never_show_the_seed(admin: Admin) -> None:
    with admin.client("manage") as client:
        done = client.post("/api/v1/hardware-tokens/import", json={"format": "csv", "content": CSV})
        assert done.status_code == 201, done.text
        assert done.json() == {"imported": 3, "hotp": 1, "totp": 2}

        bad = CSV.replace("HOTP-1", "HOTP-9").replace("TOTP-1", "TOTP-9") + f"SHORT,{bytes(8).hex()},TOTP\n"
        refused = client.post("/api/v1/hardware-tokens/import", json={"format": "csv", "content": bad})
        assert refused.status_code == 400
        message = refused.json()["error"]["message"]
        assert message.startswith("token file refused, nothing imported (2 problem(s)):")
        assert "line 4: serial 'TOTP-2' is already stored" in message
        assert "line 5: seed is 64 bits, at least 128 are required" in message
        assert token_count(admin) == 3  # HOTP-9 and TOTP-9 were good rows, yet nothing went in

        assert client.post(
            "/api/v1/hardware-tokens/import", json={"format": "pskc", "content": PSKC}
        ).json() == {"imported": 1, "hotp": 1, "totp": 0}
        bomb = '<!DOCTYPE x [<!ENTITY a "aaaa">]><KeyContainer>&a;</KeyContainer>'
        response = client.post("/api/v1/hardware-tokens/import", json={"format": "pskc", "content": bomb})
        assert response.status_code == 400 and "refused: the XML uses a DTD or entities" in response.text
        for body in ({"format": "zip", "content": CSV}, {"format": "csv", "content": ""}, {"format": "csv"}):
            assert client.post("/api/v1/hardware-tokens/import", json=body).status_code in (400, 422)

        first = client.get("/api/v1/hardware-tokens", params={"limit": 2})
        assert [t["serial"] for t in first.json()["items"]] == ["HOTP-1", "PSKC-1"]
        second = client.get(
            "/api/v1/hardware-tokens", params={"limit": 2, "cursor": first.json()["nextCursor"]}
        )
        assert [t["serial"] for t in second.json()["items"]] == ["TOTP-1", "TOTP-2"]
        assert second.json()["nextCursor"] is None
        prefixed = client.get("/api/v1/hardware-tokens", params={"serialPrefix": "TOTP"}).json()["items"]
        assert [(t["serial"], t["digits"], t["period"], t["algorithm"]) for t in prefixed] == [
            ("TOTP-1", 6, 30, "SHA1"),
            ("TOTP-2", 8, 60, "SHA256"),
        ]
        assert client.get("/api/v1/hardware-tokens", params={"assigned": "true"}).json()["items"] == []
        assert client.get("/api/v1/hardware-tokens", params={"cursor": "AA"}).status_code == 400

        token = client.get(f"/api/v1/hardware-tokens/{first.json()['items'][0]['tokenId']}").json()
        assert set(token) == {"tokenId", "serial", "type", "digits", "algorithm", "period"} | {
            "counter",
            "drift",
            "userId",
            "imported",
        }
        assert token["type"] == "HOTP" and token["period"] is None
        listing_text = first.text + second.text + str(token)
        assert SEED.hex() not in listing_text and B32 not in listing_text
        assert client.get("/api/v1/hardware-tokens/nope").status_code == 404
    with admin.client("read") as client:
        assert (
            client.post("/api/v1/hardware-tokens/import", json={"format": "csv", "content": CSV}).status_code
            == 403
        )
    with admin.db.read() as session:
        stored = session.scalars(sa.select(HardwareToken)).all()
        keys = admin.served.settings.keys
        for row in stored:
            assert SEED not in row.seed_enc
            assert keys.unseal(row.seed_enc, f"hardware_token:{row.id}") == SEED


def test_assign_second_assignment_unassign_and_device_delete(admin: Admin) -> None:
    with admin.client("manage") as client:
        client.post("/api/v1/hardware-tokens/import", json={"format": "csv", "content": CSV})
        ann = add_user(admin.db, "ann")
        ben = add_user(admin.db, "ben")
        off = add_user(admin.db, "off", devices=(DeviceState.DISABLED,))

        assigned = client.post(f"/api/v1/users/{ann}/hardware-token", json={"serial": "TOTP-1"})
        assert assigned.status_code == 201, assigned.text
        assert assigned.json()["userStatus"] == "ACTIVE" and assigned.json()["token"]["userId"] == ann
        device_id = assigned.json()["deviceId"]
        devices = client.get(f"/api/v1/users/{ann}/devices").json()["items"]
        assert [(d["type"], d["state"], d["hardwareTokenSerial"]) for d in devices] == [
            ("HARDWARE_TOKEN", "ACTIVE", "TOTP-1")
        ]

        second = client.post(f"/api/v1/users/{ann}/hardware-token", json={"serial": "TOTP-2"})
        assert second.status_code == 409 and "already has hardware token TOTP-1" in second.text
        taken = client.post(f"/api/v1/users/{ben}/hardware-token", json={"serial": "TOTP-1"})
        assert taken.status_code == 409 and "assigned to another user" in taken.text
        assert client.post(f"/api/v1/users/{ben}/hardware-token", json={"serial": "NOPE"}).status_code == 404
        refused = client.post(f"/api/v1/users/{off}/hardware-token", json={"serial": "TOTP-2"})
        assert refused.status_code == 409 and "DEVICES_DISABLED" in refused.json()["error"]["message"]
        assert (
            client.post("/api/v1/users/nobody/hardware-token", json={"serial": "TOTP-2"}).status_code == 404
        )

        assigned_list = client.get("/api/v1/hardware-tokens", params={"assigned": "true"}).json()["items"]
        assert [t["serial"] for t in assigned_list] == ["TOTP-1"]

        freed = client.delete(f"/api/v1/users/{ann}/hardware-token")
        assert freed.status_code == 200 and freed.json()["userStatus"] == "UNENROLLED"
        assert freed.json()["token"]["userId"] is None
        assert client.delete(f"/api/v1/users/{ann}/hardware-token").status_code == 404
        assert client.get(f"/api/v1/users/{ann}/devices").json()["items"] == []

        again = client.post(f"/api/v1/users/{ben}/hardware-token", json={"serial": "TOTP-1"})
        assert again.status_code == 201
        gone = client.delete(f"/api/v1/users/{ben}/devices/{again.json()['deviceId']}")
        assert gone.status_code == 200 and gone.json()["userStatus"] == "UNENROLLED"
        token = client.get(f"/api/v1/hardware-tokens/{again.json()['token']['tokenId']}").json()
        assert token["userId"] is None  # deleting the device freed the token
        assert (
            client.post(f"/api/v1/users/{ben}/hardware-token", json={"serial": "TOTP-2"}).status_code == 201
        )
    with admin.db.read() as session:
        assert session.get(Device, device_id) is None
        purposes = sorted(
            m.purpose for m in session.scalars(sa.select(OutboxMessage).where(OutboxMessage.user_id == ann))
        )
        assert purposes == ["device_added", "device_removed"]


def test_resync_hotp_and_totp(admin: Admin) -> None:
    now = datetime.now(UTC)
    with admin.client("manage") as client:
        client.post("/api/v1/hardware-tokens/import", json={"format": "csv", "content": CSV})
        tokens = {t["serial"]: t["tokenId"] for t in client.get("/api/v1/hardware-tokens").json()["items"]}

        hotp_url = f"/api/v1/hardware-tokens/{tokens['HOTP-1']}/resync"
        synced = client.post(hotp_url, json={"codes": [hotp(40), hotp(41)]})
        assert synced.status_code == 200, synced.text
        assert synced.json()["counter"] == 42
        behind = client.post(hotp_url, json={"codes": [hotp(10), hotp(11)]})  # before the counter
        assert behind.status_code == 409 and "within the next 100 counter values" in behind.text
        assert client.post(hotp_url, json={"codes": [hotp(200), hotp(201)]}).status_code == 409
        assert (
            client.post(hotp_url, json={"codes": [hotp(43), hotp(45)]}).status_code == 409
        )  # not consecutive

        totp_url = f"/api/v1/hardware-tokens/{tokens['TOTP-1']}/resync"
        ahead = client.post(totp_url, json={"codes": [totp(now, 5), totp(now, 6)]})
        assert ahead.status_code == 200, ahead.text
        step = otp.step_at(now.timestamp(), 30)
        # A 30 s step boundary may pass between `now` and the request (seen under load): drift 5, not 6.
        assert ahead.json()["drift"] in (6, 5)
        assert ahead.json()["counter"] in (step + 7, step + 8)
        far = client.post(totp_url, json={"codes": [totp(now, 30), totp(now, 31)]})
        assert far.status_code == 409 and "±20 time steps" in far.text

        for bad in ({"codes": ["123456"]}, {"codes": ["12345a", "123456"]}, {"codes": ["1", "2"]}, {}):
            assert client.post(hotp_url, json=bad).status_code in (400, 422)
        wrong_length = client.post(
            f"/api/v1/hardware-tokens/{tokens['TOTP-2']}/resync", json={"codes": ["123456"] * 2}
        )
        assert wrong_length.status_code == 400 and "8-digit" in wrong_length.text
        assert (
            client.post("/api/v1/hardware-tokens/nope/resync", json={"codes": ["123456"] * 2}).status_code
            == 404
        )


def _setup(db: Database) -> tuple[str, str]:
    keys = make_settings().keys
    with db.write() as session:
        hardware_tokens.import_tokens(session, parse(CSV, "csv"), keys=keys, actor="test")
    return add_user(db, "hot"), add_user(db, "tim")


def test_check_hotp_window_and_replay(db: Database) -> None:
    keys = make_settings().keys
    hot, tim = _setup(db)
    with db.write() as session:
        assert token_codes.check(session, hot, hotp(0), keys=keys, now=NOW) is None  # no token yet
        hardware_tokens.assign(session, hot, "HOTP-1", actor="test", host="example.com")
    with db.write() as session:
        assert token_codes.check(session, hot, hotp(3), keys=keys, now=NOW) is True
        assert token_codes.check(session, hot, hotp(3), keys=keys, now=NOW) is False  # accepted once
        assert token_codes.check(session, hot, hotp(2), keys=keys, now=NOW) is False  # behind the counter
        assert token_codes.check(session, hot, hotp(4 + 10), keys=keys, now=NOW) is False  # beyond 10
        assert token_codes.check(session, hot, hotp(13), keys=keys, now=NOW) is True  # last of the window
        assert token_codes.check(session, hot, "12345", keys=keys, now=NOW) is False
        token = session.scalar(sa.select(HardwareToken).where(HardwareToken.serial == "HOTP-1"))
        assert token is not None and token.counter == 14
    with db.write() as session:  # a disabled device is no device
        device = session.scalar(sa.select(Device).where(Device.user_id == hot))
        assert device is not None
        device.state = DeviceState.DISABLED
    with db.write() as session:
        assert token_codes.check(session, hot, hotp(14), keys=keys, now=NOW) is None
        assert token_codes.check(session, tim, hotp(14), keys=keys, now=NOW) is None


def test_check_totp_drift_replay_and_pool(db: Database) -> None:
    keys = make_settings().keys
    hot, tim = _setup(db)
    with db.write() as session:
        token = hardware_tokens.assign_from_pool(session, tim, actor="test")
        assert token.serial == "HOTP-1" and token.user_id == tim
        with pytest.raises(DomainError, match="already has hardware token"):
            hardware_tokens.assign_from_pool(session, tim, actor="test")
        user = session.get(User, tim)
        assert user is not None and user.status.value == "ACTIVE"
        hardware_tokens.unassign(session, tim, actor="test", host="example.com")
        hardware_tokens.assign(session, tim, "TOTP-1", actor="test", host="example.com")
    with db.write() as session:
        assert token_codes.check(session, tim, totp(NOW), keys=keys, now=NOW) is True
        assert token_codes.check(session, tim, totp(NOW), keys=keys, now=NOW) is False  # replay
        assert token_codes.check(session, tim, totp(NOW, -1), keys=keys, now=NOW) is False  # older step
        assert token_codes.check(session, tim, totp(NOW, 1), keys=keys, now=NOW) is True  # +1 tolerated
        assert token_codes.check(session, tim, totp(NOW, 5), keys=keys, now=NOW) is False  # too far
        held = hardware_tokens.of_user(session, tim)
        assert held is not None and held.drift == 1
        token_id = held.id
    later = NOW + timedelta(minutes=10)
    with db.write() as session:  # the token's clock runs 4 steps ahead: resync learns it
        token_codes.resync(
            session, token_id, [totp(later, 3), totp(later, 4)], keys=keys, actor="test", now=later
        )
    with db.write() as session:
        assert (
            token_codes.check(session, tim, totp(later, 4), keys=keys, now=later) is False
        )  # spent by resync
        assert (
            token_codes.check(session, tim, totp(later, 5), keys=keys, now=later + timedelta(seconds=30))
            is True
        )
    other, last = add_user(db, "zed"), add_user(db, "last")
    with db.write() as session:
        hardware_tokens.assign_from_pool(session, hot, actor="test")
        hardware_tokens.assign_from_pool(session, other, actor="test")
    with db.write() as session, pytest.raises(DomainError, match="no unassigned hardware token"):
        hardware_tokens.assign_from_pool(session, last, actor="test")
