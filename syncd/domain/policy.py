"""Access policies: ordered rules that allow, deny or require MFA for applications (docs/adr/0053).

Pure: no storage, no I/O. A :class:`Policy` has a priority (lower number first) and ordered :class:`Rule`
objects; a rule names applications (``"*"`` is every application), :class:`Conditions` that must all hold,
and an action. :func:`evaluate` walks the policies in priority order (then name, then id, so the order is
total) and their rules in order: the first rule whose application and conditions match decides. When no
rule matches the answer is ``REQUIRE_MFA`` ("no rule matched"): a missing policy never lets anyone in
without a second factor, and never locks everyone out either.

:func:`explain` returns the same decision plus a trace of every rule checked (the condition that failed or
the conditions that matched), for ``POST /api/v1/policies/evaluate``.

Stored rules are JSON (camelCase, as the API shows them); :func:`rule_from_json` reads them. The API
validates input before it gets here.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["ALLOW", "DENY", "REQUIRE_MFA"]
ACTIONS: tuple[Action, ...] = ("ALLOW", "DENY", "REQUIRE_MFA")
ALL_APPLICATIONS = "*"
NO_MATCH_REASON = "no rule matched"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FactorType(enum.StrEnum):
    """The factors syncd verifies itself (the shared vocabulary of issue 6)."""

    TOTP = "TOTP"
    HARDWARE_TOKEN = "HARDWARE_TOKEN"  # noqa: S105 - a factor name, not a secret
    BYPASS_CODE = "BYPASS_CODE"


FACTOR_TYPES = frozenset(f.value for f in FactorType)

REQUIRING_ACTIONS: frozenset[str] = frozenset({"ALLOW", "REQUIRE_MFA"})
"""A rule *requires* a factor when its ``factorTypes`` condition names it and its action is one of these
(access depends on that factor being usable); see :func:`requires_factor`."""


@dataclass(frozen=True, slots=True)
class Conditions:
    """All given conditions must hold; ``None`` means "not a condition" (any value passes)."""

    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    user_status: frozenset[str] | None = None
    factor_types: frozenset[str] | None = None
    networks: tuple[IPNetwork, ...] | None = None
    not_networks: tuple[IPNetwork, ...] | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    applications: frozenset[str]
    action: Action
    conditions: Conditions = field(default_factory=Conditions)

    def applies_to(self, application: str) -> bool:
        return ALL_APPLICATIONS in self.applications or application in self.applications


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    name: str
    priority: int
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class AccessRequest:
    user_id: str
    user_status: str
    group_ids: frozenset[str]
    application: str
    factor: str | None
    client_ip: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    """``rule_index`` is 0-based within the policy's rules; both are None when no rule matched."""

    action: Action
    policy_id: str | None
    rule_index: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Check:
    """One condition of one rule: its name (as in the API), whether it held, and a word on why."""

    condition: str
    held: bool
    detail: str


@dataclass(frozen=True, slots=True)
class RuleTrace:
    policy_id: str
    rule_index: int
    action: Action
    matched: bool
    checks: tuple[Check, ...]

    @property
    def failed(self) -> Check | None:
        return next((c for c in self.checks if not c.held), None)


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    order: tuple[str, ...]
    """Policy ids in the order they were considered."""
    trace: tuple[RuleTrace, ...]
    """Every rule checked, in order, up to and including the one that decided."""


# ---- evaluation ----------------------------------------------------------------------------------
def ordered(policies: Iterable[Policy]) -> list[Policy]:
    """Priority ascending, then name, then id: a total order, so evaluation is deterministic."""
    return sorted(policies, key=lambda p: (p.priority, p.name, p.id))


def parse_ip(value: str | None) -> IPAddress | None:
    """The client address, IPv4-mapped IPv6 (``::ffff:10.0.0.1``) read as IPv4; None when absent or bad."""
    if value is None:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _in_any(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def _show(values: Iterable[object]) -> str:
    return ", ".join(sorted(str(v) for v in values))


def check_rule(rule: Rule, request: AccessRequest) -> tuple[Check, ...]:
    """The checks of one rule in a fixed order, stopping at the first that fails."""
    checks: list[Check] = []

    def add(condition: str, held: bool, detail: str) -> bool:
        checks.append(Check(condition, held, detail))
        return held

    applies = rule.applies_to(request.application)
    shown_apps = _show(rule.applications)
    if not add(
        "applications", applies, f"{request.application!r} {'in' if applies else 'not in'} [{shown_apps}]"
    ):
        return tuple(checks)
    c = rule.conditions
    if c.users is not None:
        held = request.user_id in c.users
        if not add("users", held, "user is listed" if held else "user is not listed"):
            return tuple(checks)
    if c.groups is not None:
        common = c.groups & request.group_ids
        detail = f"member of {_show(common)}" if common else "member of none of the groups"
        if not add("groups", bool(common), detail):
            return tuple(checks)
    if c.user_status is not None:
        held = request.user_status in c.user_status
        if not add("userStatus", held, f"status {request.user_status} {'in' if held else 'not in'} the list"):
            return tuple(checks)
    if c.factor_types is not None:
        held = request.factor is not None and request.factor in c.factor_types
        shown = request.factor if request.factor is not None else "no factor"
        if not add("factorTypes", held, f"{shown} {'in' if held else 'not in'} [{_show(c.factor_types)}]"):
            return tuple(checks)
    address = parse_ip(request.client_ip)
    if c.networks is not None:
        held = address is not None and _in_any(address, c.networks)
        detail = (
            "no client IP" if address is None else f"{address} {'in' if held else 'in none of'} the networks"
        )
        if not add("networks", held, detail):
            return tuple(checks)
    if c.not_networks is not None:
        held = address is not None and not _in_any(address, c.not_networks)
        if address is None:
            detail = "no client IP (it cannot be shown to be outside)"
        else:
            detail = f"{address} {'outside' if held else 'inside'} the excluded networks"
        if not add("notNetworks", held, detail):
            return tuple(checks)
    return tuple(checks)


def explain(policies: Sequence[Policy], request: AccessRequest) -> Explanation:
    """The decision for ``request`` and the trace of how it was reached."""
    order = ordered(policies)
    trace: list[RuleTrace] = []
    for policy in order:
        for index, rule in enumerate(policy.rules):
            checks = check_rule(rule, request)
            matched = all(c.held for c in checks)
            trace.append(RuleTrace(policy.id, index, rule.action, matched, checks))
            if matched:
                reason = f"policy {policy.name!r} rule {index}: {rule.action}"
                decision = Decision(rule.action, policy.id, index, reason)
                return Explanation(decision, tuple(p.id for p in order), tuple(trace))
    decision = Decision("REQUIRE_MFA", None, None, NO_MATCH_REASON)
    return Explanation(decision, tuple(p.id for p in order), tuple(trace))


def evaluate(policies: Sequence[Policy], request: AccessRequest) -> Decision:
    """First matching rule of the highest-priority policy wins; nothing matches → REQUIRE_MFA."""
    return explain(policies, request).decision


def requires_factor(policy: Policy, factor_type: str) -> list[int]:
    """Indexes of the rules of ``policy`` that require ``factor_type``: their ``factorTypes`` condition
    names it and their action is ALLOW or REQUIRE_MFA (turning the factor off org-wide would make such a
    rule unreachable or leave its users unable to satisfy it)."""
    return [
        i
        for i, rule in enumerate(policy.rules)
        if rule.action in REQUIRING_ACTIONS
        and rule.conditions.factor_types is not None
        and factor_type in rule.conditions.factor_types
    ]


# ---- JSON form (storage and API) ----------------------------------------------------------------
def _networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def _set(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValueError("expected a list")
    return frozenset(str(v) for v in value)


def rule_from_json(data: Mapping[str, Any]) -> Rule:
    """A rule from its JSON form (``{"applications": [...], "conditions": {...}, "action": ...}``).

    Raises ValueError on malformed data (bad CIDR, unknown action)."""
    action = data.get("action")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    applications = _set(data.get("applications")) or frozenset()
    raw = data.get("conditions") or {}
    networks = raw.get("networks")
    not_networks = raw.get("notNetworks")
    conditions = Conditions(
        users=_set(raw.get("users")),
        groups=_set(raw.get("groups")),
        user_status=_set(raw.get("userStatus")),
        factor_types=_set(raw.get("factorTypes")),
        networks=_networks(networks) if networks is not None else None,
        not_networks=_networks(not_networks) if not_networks is not None else None,
    )
    return Rule(applications, action, conditions)


def policy_from_json(policy_id: str, name: str, priority: int, rules: Sequence[Mapping[str, Any]]) -> Policy:
    return Policy(policy_id, name, priority, tuple(rule_from_json(r) for r in rules))


def normalize_cidr(value: str) -> str:
    """A CIDR (or a bare address) in canonical form; host bits are cleared (``10.1.2.3/8`` → ``10.0.0.0/8``).

    Raises ValueError when it is not an IPv4 or IPv6 network."""
    return str(ipaddress.ip_network(value.strip(), strict=False))
