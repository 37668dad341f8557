"""Admin API: a user's devices (seed 000 "Device", "Disable a device", "Enable a device").

Changes go through the lifecycle rules (:mod:`syncd.store.devices`): a refusal is 409 with the rule's
message, and every answer to a change carries the user's status derived again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.schemas import ERRORS, ID_PATTERN
from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.errors import NotFoundError
from syncd.store import devices
from syncd.store.keys import Keys
from syncd.store.tables import Device

router = APIRouter(tags=["devices"])


UserId = Annotated[str, Path(pattern=ID_PATTERN, description="The user's id.")]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN, description="The device's id.")]


def mail_host(request: Request) -> str:
    """The right-hand side of Message-IDs for mail queued by admin changes."""
    settings = request.app.state.enrollment
    if settings is not None:
        return str(settings.mail_host)
    return urlsplit(request.app.state.config.org.base_url).hostname or "localhost"


def seed_keys(request: Request) -> Keys:
    """The keys sealing seeds, or 404 when enrollment (``secrets.seed_key``) is not configured."""
    settings = request.app.state.enrollment
    if settings is None:
        raise NotFoundError("enrollment is not configured")
    keys: Keys = settings.keys
    return keys


class DeviceOut(BaseModel):
    deviceId: str
    userId: str
    type: DeviceType
    state: DeviceState
    name: str | None
    hardwareTokenSerial: str | None
    """The serial of the hardware token behind a ``HARDWARE_TOKEN`` device."""
    created: datetime
    updated: datetime
    lastUsed: datetime | None


class DeviceList(BaseModel):
    items: list[DeviceOut]


class DeviceChanged(BaseModel):
    device: DeviceOut
    userStatus: UserStatus
    """The user's status after the change."""


class DeviceDeleted(BaseModel):
    deviceId: str
    userStatus: UserStatus


def device_out(device: Device, serial: str | None = None) -> DeviceOut:
    return DeviceOut(
        deviceId=device.id,
        userId=device.user_id,
        type=device.type,
        state=device.state,
        name=device.name,
        hardwareTokenSerial=serial,
        created=device.created_at,
        updated=device.updated_at,
        lastUsed=device.last_used_at,
    )


def _out(session: Session, device: Device) -> DeviceOut:
    serial = None
    if device.hardware_token_id is not None:
        serial = devices.serials(session, [device.hardware_token_id]).get(device.hardware_token_id)
    return device_out(device, serial)


@router.get("/users/{userId}/devices", responses=ERRORS)
def list_devices(
    request: Request, userId: UserId, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> DeviceList:
    """The user's devices, oldest first."""
    with request.app.state.db.read() as session:
        rows = devices.listing(session, userId)
        serials = devices.serials(session, [d.hardware_token_id for d in rows if d.hardware_token_id])
        return DeviceList(items=[device_out(d, serials.get(d.hardware_token_id or "")) for d in rows])


@router.get("/users/{userId}/devices/{deviceId}", responses=ERRORS)
def get_device(
    request: Request,
    userId: UserId,
    deviceId: DeviceId,
    caller: Annotated[Caller, Depends(require(Scope.READ))],
) -> DeviceOut:
    with request.app.state.db.read() as session:
        return _out(session, devices.get(session, userId, deviceId))


@router.post("/users/{userId}/devices/{deviceId}/disable", responses=ERRORS)
def disable_device(
    request: Request,
    userId: UserId,
    deviceId: DeviceId,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> DeviceChanged:
    """ACTIVE → DISABLED. The last ACTIVE device disabled makes the user DEVICES_DISABLED. PENDING devices
    can't be disabled (409: delete them instead)."""
    with request.app.state.db.write() as session:
        device = devices.disable(session, userId, deviceId, actor=caller.actor, host=mail_host(request))
        user = devices.load_user(session, userId)
        return DeviceChanged(device=_out(session, device), userStatus=user.status)


@router.post("/users/{userId}/devices/{deviceId}/enable", responses=ERRORS)
def enable_device(
    request: Request,
    userId: UserId,
    deviceId: DeviceId,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> DeviceChanged:
    """DISABLED → ACTIVE (409 for a device that is not DISABLED)."""
    with request.app.state.db.write() as session:
        device = devices.enable(session, userId, deviceId, actor=caller.actor)
        user = devices.load_user(session, userId)
        return DeviceChanged(device=_out(session, device), userStatus=user.status)


@router.delete("/users/{userId}/devices/{deviceId}", responses=ERRORS)
def delete_device(
    request: Request,
    userId: UserId,
    deviceId: DeviceId,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> DeviceDeleted:
    """Delete a device in any state (a hardware token's device frees the token)."""
    with request.app.state.db.write() as session:
        devices.delete(session, userId, deviceId, actor=caller.actor, host=mail_host(request))
        user = devices.load_user(session, userId)
        return DeviceDeleted(deviceId=deviceId, userStatus=user.status)
