"""Enrollment test helpers: settings without a config file, users and invites in one call."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from syncd.config.models import Config
from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.store import invites, users
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.keys import Keys
from syncd.store.tables import Device, User

SEED_KEY = "test-seed-key-0123456789abcdefghijklmnopqrstuvwxyz"


def make_config(**sections: Any) -> Config:
    data: dict[str, Any] = {
        "org": {"name": "Test Corp", "base_url": "http://127.0.0.1:8080", "support_email": "help@example.com"}
    }
    data.update(sections)
    return Config.model_validate(data)


def make_settings(
    *, invite_sources: frozenset[str] = frozenset({"hr"}), **changes: Any
) -> EnrollmentSettings:
    settings = EnrollmentSettings.from_config(make_config(), Keys.from_secret(SEED_KEY))
    return dataclasses.replace(settings, invite_sources=invite_sources, **changes)


def add_user(
    db: Database,
    username: str,
    *,
    email: str | None = "",
    provisioned: bool = True,
    devices: tuple[DeviceState, ...] = (),
) -> str:
    with db.write() as session:
        user = users.create(
            session,
            {
                "username": username,
                "email": f"{username}@example.com" if email == "" else email,
                "given_name": username.capitalize(),
            },
            provisioned=provisioned,
            managed_by=None,
            actor="test",
            reason="test",
        )
        for state in devices:
            session.add(Device(user_id=user.id, type=DeviceType.PUSH, state=state))
        if devices:
            user.status = UserStatus.ACTIVE if DeviceState.ACTIVE in devices else UserStatus.DEVICES_DISABLED
        return user.id


def invite(db: Database, user_id: str, settings: EnrollmentSettings, *, now: datetime | None = None) -> str:
    """Issue an invite; returns its link token."""
    with db.write() as session:
        user = session.get(User, user_id)
        assert user is not None
        issued = invites.issue(session, user, settings, actor="test", reason="test", now=now)
        assert isinstance(issued, invites.Issued), issued
    return invites.link_for(settings, issued.invite_id).rsplit("/", 1)[1]


def days(n: float) -> timedelta:
    return timedelta(days=n)
