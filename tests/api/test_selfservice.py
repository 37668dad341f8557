"""Self-service registration API (seed doc 001) over real HTTP, both databases: the session, CHALLENGE with
the org's TOTP settings, VERIFY, status, DELETE with a code, errors, and 50 parallel submissions (O1)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest
import sqlalchemy as sa
from harness.enrollment import add_user, invite
from harness.served import Served, start_session

from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.store.tables import Device, User


def enrolled_session(served: Served, username: str) -> tuple[httpx.Client, str]:
    user_id = add_user(served.db, username)
    token = invite(served.db, user_id, served.settings)
    client = served.client()
    assert start_session(client, token).status_code == 303
    return client, user_id


def totp_devices(served: Served, user_id: str) -> list[Device]:
    with served.db.read() as session:
        query = sa.select(Device).where(Device.user_id == user_id, Device.type == DeviceType.TOTP)
        return list(session.scalars(query))


def test_register_verify_status_delete(served: Served) -> None:
    client, user_id = enrolled_session(served, "alice")
    with closing(client):
        challenge = client.post("/api/mfa/register/TOTP", json={"action": "GENERATE_SECRET"})
        assert challenge.status_code == 200
        body = challenge.json()
        assert (body["status"], body["factor"]) == ("CHALLENGE", "TOTP")
        key, uri = body["additionalDetails"]["key"], body["additionalDetails"]["uri"]
        assert body["additionalDetails"]["registrationStatus"] == "CHALLENGE"
        parts = urlsplit(uri)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert parts.scheme == "otpauth" and parts.path == "/Test%20Corp:alice@example.com"
        assert query == {
            "secret": key,
            "issuer": "Test Corp",
            "algorithm": "SHA1",
            "digits": "6",
            "period": "30",
        }
        assert client.get("/api/mfa/register/TOTP").json() == {"status": "CHALLENGE", "factor": "TOTP"}

        totp = pyotp.TOTP(key)
        wrong = "000000" if totp.now() != "000000" else "111111"
        refused = client.post("/api/mfa/register/TOTP", json={"action": "VERIFY", "otp": wrong})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_code"
        ok = client.post("/api/mfa/register/TOTP", json={"action": "VERIFY", "otp": totp.now()})
        assert ok.status_code == 200 and ok.json() == {"status": "REGISTERED", "factor": "TOTP"}
        replay = client.post("/api/mfa/register/TOTP", json={"action": "VERIFY", "otp": totp.now()})
        assert replay.status_code == 404  # nothing left to confirm; the secret is not shown again
        status = client.get("/api/mfa/register/TOTP")
        assert status.json() == {"status": "REGISTERED", "factor": "TOTP"} and key not in status.text
        again = client.post("/api/mfa/register/TOTP", json={"action": "GENERATE_SECRET"})
        assert again.status_code == 409 and key not in again.text

        bad_delete = client.delete(f"/api/mfa/register/TOTP/{wrong}")
        assert bad_delete.status_code == 400
        now_code = totp.now()
        same_step = client.delete(f"/api/mfa/register/TOTP/{now_code}")
        assert same_step.status_code == 400  # that step was used to register: replay refused
        next_code = totp.at(time.time() + 30)
        deleted = client.delete(f"/api/mfa/register/TOTP/{next_code}")
        assert deleted.status_code == 200 and deleted.json() == {
            "message": "TOTP registration deleted",
            "errorCode": None,
        }
        assert client.get("/api/mfa/register/TOTP").json()["status"] == "UNREGISTERED"
        refused_now = client.post("/api/mfa/register/TOTP", json={"action": "GENERATE_SECRET"})
        assert refused_now.status_code == 409 and "DEVICES_DISABLED" in refused_now.json()["error"]["message"]
    with served.db.read() as session:
        user = session.get(User, user_id)
        assert user is not None and user.status is UserStatus.DEVICES_DISABLED
    assert [d.state for d in totp_devices(served, user_id)] == [DeviceState.DISABLED]


def test_requests_without_a_session_or_json_or_from_elsewhere_are_refused(served: Served) -> None:
    with served.client() as anonymous:
        for response in (
            anonymous.get("/api/mfa/register/TOTP"),
            anonymous.post("/api/mfa/register/TOTP", json={"action": "GENERATE_SECRET"}),
            anonymous.delete("/api/mfa/register/TOTP/123456"),
        ):
            assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
    with served.client(cookies={"syncd_enroll": "a.b.9999999999.00"}) as forger:
        assert forger.get("/api/mfa/register/TOTP").status_code == 401
    client, _ = enrolled_session(served, "bob")
    with closing(client):
        form = client.post(
            "/api/mfa/register/TOTP",
            content=b'{"action":"GENERATE_SECRET"}',
            headers={"content-type": "text/plain"},
        )
        assert form.status_code in (400, 422)  # a simple cross-site form can't post JSON
        cross = client.post(
            "/api/mfa/register/TOTP",
            json={"action": "GENERATE_SECRET"},
            headers={"origin": "https://evil.example"},
        )
        assert cross.status_code == 401
        assert client.get("/api/mfa/register/SMS").status_code == 404
        assert client.post("/api/mfa/register/TOTP", json={"action": "NOPE"}).status_code == 422


@pytest.mark.parametrize("submissions", [50])
def test_fifty_parallel_http_submissions_of_one_code_give_one_success(
    served: Served, submissions: int
) -> None:
    client, user_id = enrolled_session(served, "carol")
    with closing(client):
        key = client.post("/api/mfa/register/TOTP", json={"action": "GENERATE_SECRET"}).json()[
            "additionalDetails"
        ]["key"]
        code = pyotp.TOTP(key).now()
        cookies = dict(client.cookies)

        def submit(_: int) -> int:
            with served.client(cookies=cookies) as c:
                return c.post("/api/mfa/register/TOTP", json={"action": "VERIFY", "otp": code}).status_code

        with ThreadPoolExecutor(submissions) as pool:
            codes = list(pool.map(submit, range(submissions)))
    assert codes.count(200) == 1, codes
    assert set(codes) <= {200, 400, 404}
    assert [d.state for d in totp_devices(served, user_id)] == [DeviceState.ACTIVE]
