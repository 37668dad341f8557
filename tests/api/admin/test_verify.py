"""POST /api/v1/verify over real HTTP on SQLite and PostgreSQL: every outcome, one public reason for all
refusals about the user or the code, replay refused, lockout and unlock, last-authentication fields,
PROVISIONING_DISABLED refused even with a good bypass code, and equal timing of the refusals."""

from __future__ import annotations

import json
import statistics
import time
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa
from harness.admin import Admin

from syncd.domain import otp, token_files
from syncd.domain.bypass import make_codes
from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.store import bypass_codes, factors, hardware_tokens
from syncd.store.tables import (
    BypassCode,
    Device,
    OrgFactor,
    Policy,
    PolicyAssignment,
    User,
    UserFactor,
    new_id,
    utcnow,
)

ROUTE = "/api/v1/verify"
INVALID = {"result": "DENY", "reason": "invalid_credentials"}
ALLOW = {"result": "ALLOW", "reason": "ok"}


def add_totp_user(
    admin: Admin, username: str, *, provisioned: bool = True, device: DeviceState = DeviceState.ACTIVE
) -> tuple[str, bytes]:
    """A user with one TOTP device in ``device`` state; returns (user id, seed)."""
    secret = otp.new_secret()
    user_id, device_id = new_id(), new_id()
    status = UserStatus.ACTIVE if device is DeviceState.ACTIVE else UserStatus.DEVICES_DISABLED
    with admin.db.write() as session:
        session.add(
            User(
                id=user_id,
                username=username,
                username_key=username.casefold(),
                email=f"{username.lower()}@example.com",
                status=status if provisioned else UserStatus.PROVISIONING_DISABLED,
                provisioned=provisioned,
            )
        )
        session.flush()
        sealed = admin.served.settings.keys.seal(secret, f"device:{device_id}")
        session.add(
            Device(id=device_id, user_id=user_id, type=DeviceType.TOTP, state=device, secret_enc=sealed)
        )
    return user_id, secret


def code_now(admin: Admin, secret: bytes, at: datetime | None = None) -> str:
    return otp.totp(secret, (at or utcnow()).timestamp(), admin.served.settings.totp)


def wrong_code(admin: Admin, secret: bytes) -> str:
    now = utcnow().timestamp()
    period = admin.served.settings.totp.period
    near = {otp.totp(secret, now + d * period, admin.served.settings.totp) for d in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(1000)) if c not in near)


def verify(client: httpx.Client, user: str, code: str, factor: str = "TOTP", **extra: str) -> dict[str, str]:
    body = {"user": user, "application": "vpn", "factor": factor, "code": code, **extra}
    response = client.post(ROUTE, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def user_factor(admin: Admin, user_id: str, factor: str = "TOTP") -> UserFactor | None:
    with admin.db.read() as session:
        return session.get(UserFactor, (user_id, factor))


def test_totp_allow_replay_failure_counting_and_last_auth(admin: Admin) -> None:
    user_id, secret = add_totp_user(admin, "Alice")
    before = utcnow()
    period = admin.served.settings.totp.period
    with admin.client("verify") as client:
        code = code_now(admin, secret)
        assert verify(client, user_id, code) == ALLOW
        row = user_factor(admin, user_id)
        assert row is not None and row.last_auth_status == "SUCCESS"
        assert row.last_auth_at is not None and row.last_auth_at >= before
        assert verify(client, "alice", code) == INVALID  # replayed: refused, not counted as a guess
        row = user_factor(admin, user_id)
        assert row is not None and row.last_auth_status == "FAILURE" and row.failures == 0
        for _ in range(3):
            assert verify(client, "ALICE", wrong_code(admin, secret)) == INVALID
        row = user_factor(admin, user_id)
        assert row is not None and row.failures == 3 and row.last_auth_status == "FAILURE"
        # the next step's code, by username in another case: accepted, the counter starts again
        later = datetime.fromtimestamp(utcnow().timestamp() + period, tz=before.tzinfo)
        assert verify(client, "aLiCe", code_now(admin, secret, later)) == ALLOW
    row = user_factor(admin, user_id)
    assert row is not None and row.failures == 0 and row.last_auth_status == "SUCCESS"


def test_refusals_about_user_or_code_look_the_same_and_policy_denial_needs_a_good_code(admin: Admin) -> None:
    _, secret = add_totp_user(admin, "carol")
    gone_id, gone_secret = add_totp_user(admin, "gone")
    off_id, off_secret = add_totp_user(admin, "off")
    org_id, org_secret = add_totp_user(admin, "orgoff")
    _, dis_secret = add_totp_user(admin, "devoff", device=DeviceState.DISABLED)
    frank_id, frank_secret = add_totp_user(admin, "frank")
    grace_id, grace_secret = add_totp_user(admin, "grace")
    [frank_code] = make_codes(frank_id, 1, 9)
    with admin.db.write() as session:
        bypass_codes.generate(
            session, frank_id, [frank_code], uses=1, expires_in=timedelta(days=1),
            preserve_existing=False, actor="admin:test", host="example.com",
        )  # fmt: skip
    with admin.db.write() as session:
        gone = session.get(User, gone_id)
        frank = session.get(User, frank_id)
        assert gone is not None and frank is not None
        gone.deleted_at = utcnow()
        frank.provisioned, frank.status = False, UserStatus.PROVISIONING_DISABLED
        session.add(UserFactor(user_id=off_id, factor_type="TOTP", enabled=False))
        policy = Policy(
            name="no vpn for grace", priority=1, rules=[{"applications": ["vpn"], "action": "DENY"}]
        )
        session.add(policy)
        session.flush()
        session.add(PolicyAssignment(policy_id=policy.id, user_id=grace_id))
    with admin.client("verify") as client:
        answers = {
            "unknown user": verify(client, "nobody", "123456"),
            "unknown id": verify(client, new_id(), "123456"),
            "unknown user, bypass code": verify(client, "nobody", "123456789", factor="BYPASS_CODE"),
            "wrong code": verify(client, "carol", wrong_code(admin, secret)),
            "malformed code": verify(client, "carol", "12ab"),
            "deleted user": verify(client, "gone", code_now(admin, gone_secret)),
            "factor off for the user": verify(client, "off", code_now(admin, off_secret)),
            "device disabled": verify(client, "devoff", code_now(admin, dis_secret)),
            "no hardware token": verify(client, "carol", "123456", factor="HARDWARE_TOKEN"),
            "no bypass code": verify(client, "carol", "123456789", factor="BYPASS_CODE"),
            "provisioning disabled": verify(client, "frank", code_now(admin, frank_secret)),
            "policy, wrong code": verify(client, "grace", wrong_code(admin, grace_secret)),
        }
        answers["provisioning disabled, good bypass code"] = verify(
            client, "frank", frank_code.plaintext, factor="BYPASS_CODE"
        )
        with admin.db.write() as session:
            session.add(OrgFactor(factor_type="TOTP", status="INACTIVE"))
        answers["factor off org-wide"] = verify(client, "orgoff", code_now(admin, org_secret))
        with admin.db.write() as session:
            session.execute(sa.delete(OrgFactor))
        code = code_now(admin, grace_secret)
        assert verify(client, "grace", code) == {"result": "DENY", "reason": "policy_denied"}
        grace = user_factor(admin, grace_id)
        assert grace is not None and grace.last_auth_status == "DENIED" and grace.failures == 0
        other_app = {"user": "grace", "application": "mail", "factor": "TOTP", "code": code}
        assert client.post(ROUTE, json=other_app).json() == INVALID  # the code was used up: a replay
    assert {name: a for name, a in answers.items() if a != INVALID} == {}
    for user_id in (off_id, org_id, frank_id):
        row = user_factor(admin, user_id)
        assert row is not None and row.last_auth_status == "DENIED", user_id
    with admin.db.read() as session:
        left = session.scalar(sa.select(BypassCode.uses_left).where(BypassCode.user_id == frank_id))
    assert left == 1  # the refused bypass code was not used up


def test_lockout_after_max_failures_unlock_and_request_checks(admin: Admin) -> None:
    user_id, secret = add_totp_user(admin, "dave")
    limit = admin.served.settings.max_failures
    bad = wrong_code(admin, secret)
    with admin.client("verify") as client:
        for _ in range(limit):
            assert verify(client, "dave", bad) == INVALID
        row = user_factor(admin, user_id)
        assert row is not None and row.locked_at is not None and row.last_auth_status == "LOCKED"
        assert verify(client, "dave", code_now(admin, secret)) == INVALID  # a good code while locked
        row = user_factor(admin, user_id)
        assert row is not None and row.last_auth_status == "LOCKED"
        with admin.db.write() as session:
            assert factors.unlock(session, user_id, actor="admin:test") is True
        assert verify(client, "dave", code_now(admin, secret)) == ALLOW
        row = user_factor(admin, user_id)
        assert row is not None and row.failures == 0 and row.locked_at is None
        body = {"user": "dave", "application": "vpn", "factor": "TOTP", "code": "123456"}
        for bad_body in (
            {**body, "factor": "SMS"},
            {**body, "code": ""},
            {**body, "code": "1" * 65},
            {**body, "user": "u" * 257},
            {**body, "user": "a\x00b"},
            {**body, "extra": 1},
            {k: v for k, v in body.items() if k != "application"},
        ):
            response = client.post(ROUTE, json=bad_body)
            assert response.status_code == 422, bad_body
            assert response.json()["error"]["code"] == "invalid_request"
        raw = json.dumps({**body, "application": "\ud800"})  # a lone surrogate, escaped as JSON allows
        response = client.post(ROUTE, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
    for scope, status in (("read", 403), ("manage", 403), ("", 401)):
        with admin.client(scope) as client:
            assert client.post(ROUTE, json=body).status_code == status


def test_hardware_token_and_bypass_codes(admin: Admin) -> None:
    user_id, _ = add_totp_user(admin, "hank")
    seed = bytes(range(20))
    keys = admin.served.settings.keys
    with admin.db.write() as session:
        parsed = token_files.parse(f"serial,secret,type\nHW-V1,{seed.hex()},HOTP\n", "csv")
        assert parsed.ok, parsed
        hardware_tokens.import_tokens(session, parsed, keys=keys, actor="admin:test")
        hardware_tokens.assign(session, user_id, "HW-V1", actor="admin:test", host="example.com")
        made = make_codes(user_id, 2, 9)
        bypass_codes.generate(
            session, user_id, made, uses=1, expires_in=timedelta(days=1),
            preserve_existing=False, actor="admin:test", host="example.com",
        )  # fmt: skip
    first, second = (c.plaintext for c in made)
    with admin.client("verify") as client:
        assert verify(client, "hank", otp.hotp(seed, 2), factor="HARDWARE_TOKEN") == ALLOW  # in the window
        assert verify(client, "hank", otp.hotp(seed, 2), factor="HARDWARE_TOKEN") == INVALID  # used
        assert verify(client, "hank", otp.hotp(seed, 1), factor="HARDWARE_TOKEN") == INVALID  # behind
        assert verify(client, "hank", f"{first[:4]} {first[4:]}", factor="BYPASS_CODE") == ALLOW
        assert verify(client, "hank", first, factor="BYPASS_CODE") == INVALID  # single use
        assert verify(client, "hank", "000000000", factor="BYPASS_CODE") == INVALID
        assert verify(client, "hank", second, factor="BYPASS_CODE") == ALLOW
    hw, bc = user_factor(admin, user_id, "HARDWARE_TOKEN"), user_factor(admin, user_id, "BYPASS_CODE")
    assert hw is not None and hw.failures == 2 and hw.last_auth_status == "FAILURE"
    assert bc is not None and bc.failures == 0 and bc.last_auth_status == "SUCCESS"


def _median_ms(client: httpx.Client, bodies: dict[str, dict[str, str]], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in bodies}
    for _ in range(rounds):  # interleaved, so load on the machine hits every case alike
        for name, body in bodies.items():
            started = time.perf_counter()
            response = client.post(ROUTE, json=body)
            times[name].append((time.perf_counter() - started) * 1000)
            assert response.json() == INVALID, (name, response.text)
    return {name: statistics.median(values) for name, values in times.items()}


def test_refusals_take_the_same_time(admin: Admin) -> None:
    limit = admin.served.settings.max_failures
    wrong_users = [add_totp_user(admin, f"wrong{i}") for i in range(12)]
    _, off_secret = add_totp_user(admin, "timing-off", provisioned=False)
    locked_id, locked_secret = add_totp_user(admin, "timing-locked")
    with admin.db.write() as session:
        for _ in range(limit):
            factors.record_failure(session, locked_id, max_failures=limit)
    rounds = 40
    per_user = -(-rounds // len(wrong_users))
    assert per_user < limit  # the wrong-code users never lock
    with admin.client("verify") as client:
        _median_ms(client, {"warm": {"user": "nobody", "application": "a", "factor": "TOTP", "code": "1"}}, 5)
        cases = {
            "unknown user": {"user": "nobody-here", "code": "123456"},
            "disabled user": {"user": "timing-off", "code": code_now(admin, off_secret)},
            "locked factor": {"user": "timing-locked", "code": code_now(admin, locked_secret)},
        }
        bodies = {n: {"application": "vpn", "factor": "TOTP", **b} for n, b in cases.items()}
        times: dict[str, list[float]] = {}
        for i in range(rounds):
            user_id, secret = wrong_users[i % len(wrong_users)]
            bodies["wrong code"] = {
                "user": user_id,
                "application": "vpn",
                "factor": "TOTP",
                "code": wrong_code(admin, secret),
            }
            for name, median in _median_ms(client, bodies, 1).items():
                times.setdefault(name, []).append(median)
    medians = {name: statistics.median(values) for name, values in times.items()}
    fastest, slowest = min(medians.values()), max(medians.values())
    assert slowest / fastest < 2.0, medians
