"""Policy evaluation (syncd/domain/policy.py): first match wins, priority order, no match → REQUIRE_MFA,
every condition, CIDR edges (IPv4, IPv6, mapped addresses, host bits), the wildcard application, the
trace, and which rules *require* a factor. Hypothesis checks evaluate against a reference model."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.domain.policy import (
    NO_MATCH_REASON,
    AccessRequest,
    Conditions,
    Policy,
    Rule,
    evaluate,
    explain,
    normalize_cidr,
    parse_ip,
    policy_from_json,
    requires_factor,
    rule_from_json,
)


def req(**overrides: object) -> AccessRequest:
    base: dict[str, object] = {
        "user_id": "u1",
        "user_status": "ACTIVE",
        "group_ids": frozenset({"g1"}),
        "application": "vpn",
        "factor": "TOTP",
        "client_ip": "10.1.2.3",
    }
    base.update(overrides)
    return AccessRequest(**base)  # type: ignore[arg-type]


def rule(action: str = "ALLOW", apps: tuple[str, ...] = ("*",), **conditions: object) -> Rule:
    return rule_from_json({"applications": list(apps), "action": action, "conditions": conditions})


def pol(pid: str, priority: int, *rules: Rule, name: str | None = None) -> Policy:
    return Policy(pid, name or pid, priority, tuple(rules))


def test_no_policies_and_no_matching_rule_require_mfa() -> None:
    decision = evaluate([], req())
    assert (decision.action, decision.policy_id, decision.rule_index) == ("REQUIRE_MFA", None, None)
    assert decision.reason == NO_MATCH_REASON
    only_deny_mail = pol("p", 1, rule("DENY", ("mail",)))
    assert evaluate([only_deny_mail], req()).reason == NO_MATCH_REASON


def test_first_matching_rule_wins_within_a_policy() -> None:
    p = pol("p", 1, rule("DENY", ("mail",)), rule("ALLOW", ("vpn",)), rule("DENY", ("*",)))
    decision = evaluate([p], req())
    assert (decision.action, decision.policy_id, decision.rule_index) == ("ALLOW", "p", 1)


def test_lower_priority_number_is_evaluated_first_and_ties_break_by_name_then_id() -> None:
    deny = pol("a", 10, rule("DENY"))
    allow = pol("b", 5, rule("ALLOW"))
    assert evaluate([deny, allow], req()).policy_id == "b"
    same_a = pol("z1", 5, rule("DENY"), name="alpha")
    same_b = pol("a1", 5, rule("ALLOW"), name="beta")
    assert evaluate([same_b, same_a], req()).policy_id == "z1"
    twin1, twin2 = pol("id1", 5, rule("DENY"), name="same"), pol("id2", 5, rule("ALLOW"), name="same")
    assert evaluate([twin2, twin1], req()).policy_id == "id1"


def test_a_policy_whose_rules_do_not_match_falls_through_to_the_next() -> None:
    first = pol("first", 1, rule("DENY", ("mail",)))
    second = pol("second", 2, rule("ALLOW", ("vpn",)))
    assert evaluate([first, second], req()).policy_id == "second"


def test_wildcard_and_named_applications() -> None:
    assert evaluate([pol("p", 1, rule("DENY", ("*",)))], req(application="anything")).action == "DENY"
    named = pol("p", 1, rule("DENY", ("crm", "vpn")))
    assert evaluate([named], req(application="vpn")).action == "DENY"
    assert evaluate([named], req(application="VPN")).action == "REQUIRE_MFA"  # names are exact


@pytest.mark.parametrize(
    ("conditions", "request_overrides", "matches"),
    [
        ({"users": ["u1"]}, {}, True),
        ({"users": ["u2"]}, {}, False),
        ({"groups": ["g1", "g9"]}, {}, True),
        ({"groups": ["g9"]}, {}, False),
        ({"groups": ["g1"]}, {"group_ids": frozenset()}, False),
        ({"userStatus": ["ACTIVE", "UNENROLLED"]}, {}, True),
        ({"userStatus": ["DEVICES_DISABLED"]}, {}, False),
        ({"factorTypes": ["TOTP"]}, {}, True),
        ({"factorTypes": ["BYPASS_CODE"]}, {}, False),
        ({"factorTypes": ["TOTP"]}, {"factor": None}, False),
        ({"users": ["u1"], "groups": ["g1"], "userStatus": ["ACTIVE"]}, {}, True),
        ({"users": ["u1"], "groups": ["g1"], "userStatus": ["UNENROLLED"]}, {}, False),
    ],
)
def test_each_condition_and_all_must_hold(
    conditions: dict[str, object], request_overrides: dict[str, object], matches: bool
) -> None:
    decision = evaluate([pol("p", 1, rule("DENY", **conditions))], req(**request_overrides))
    assert (decision.action == "DENY") is matches


@pytest.mark.parametrize(
    ("networks", "ip", "inside"),
    [
        (["10.0.0.0/8"], "10.0.0.0", True),
        (["10.0.0.0/8"], "10.255.255.255", True),
        (["10.0.0.0/8"], "11.0.0.0", False),
        (["10.0.0.0/8"], "9.255.255.255", False),
        (["192.168.1.7/32"], "192.168.1.7", True),
        (["192.168.1.7/32"], "192.168.1.8", False),
        (["192.168.1.7"], "192.168.1.7", True),  # a bare address is a /32
        (["10.1.2.3/8"], "10.200.0.1", True),  # host bits cleared
        (["0.0.0.0/0"], "203.0.113.5", True),
        (["0.0.0.0/0"], "2001:db8::1", False),  # IPv4 networks never hold IPv6 addresses
        (["::/0"], "203.0.113.5", False),
        (["2001:db8::/32"], "2001:db8:ffff::1", True),
        (["2001:db8::/32"], "2001:db9::1", False),
        (["2001:DB8::/32"], "2001:db8::1", True),  # case does not matter
        (["::1/128"], "::1", True),
        (["10.0.0.0/8"], "::ffff:10.9.8.7", True),  # IPv4-mapped IPv6 is read as IPv4
        (["10.0.0.0/8", "2001:db8::/32"], "2001:db8::5", True),
        (["10.0.0.0/8"], None, False),
        (["10.0.0.0/8"], "not an ip", False),
    ],
)
def test_networks(networks: list[str], ip: str | None, inside: bool) -> None:
    decision = evaluate([pol("p", 1, rule("DENY", networks=networks))], req(client_ip=ip))
    assert (decision.action == "DENY") is inside


@pytest.mark.parametrize(
    ("ip", "holds"), [("10.1.1.1", False), ("172.16.0.1", True), ("2001:db8::1", True), (None, False)]
)
def test_not_networks_needs_a_known_ip_outside_them(ip: str | None, holds: bool) -> None:
    decision = evaluate([pol("p", 1, rule("DENY", notNetworks=["10.0.0.0/8"]))], req(client_ip=ip))
    assert (decision.action == "DENY") is holds


def test_explain_traces_each_rule_up_to_the_deciding_one_with_the_failed_condition() -> None:
    p = pol(
        "p",
        1,
        rule("DENY", ("mail",)),
        rule("DENY", ("*",), groups=["g9"]),
        rule("ALLOW", ("vpn",), networks=["10.0.0.0/8"]),
        rule("DENY"),
    )
    result = explain([p], req())
    assert result.decision.rule_index == 2
    assert [t.rule_index for t in result.trace] == [0, 1, 2]  # rule 3 never checked
    assert [t.failed.condition if t.failed else None for t in result.trace] == [
        "applications",
        "groups",
        None,
    ]
    assert [c.condition for c in result.trace[2].checks] == ["applications", "networks"]
    assert "10.1.2.3 in the networks" in result.trace[2].checks[1].detail
    assert "rule 2" in result.decision.reason and "'p'" in result.decision.reason


def test_explain_lists_policies_in_evaluation_order() -> None:
    result = explain([pol("late", 9), pol("early", 1)], req())
    assert result.order == ("early", "late")
    assert result.trace == ()


def test_requires_factor_only_for_allow_and_require_mfa_rules_naming_it() -> None:
    p = pol(
        "p",
        1,
        rule("ALLOW", factorTypes=["TOTP"]),
        rule("DENY", factorTypes=["TOTP"]),
        rule("REQUIRE_MFA", factorTypes=["HARDWARE_TOKEN", "TOTP"]),
        rule("ALLOW"),
    )
    assert requires_factor(p, "TOTP") == [0, 2]
    assert requires_factor(p, "HARDWARE_TOKEN") == [2]
    assert requires_factor(p, "BYPASS_CODE") == []


def test_json_form_rejects_bad_actions_and_networks() -> None:
    with pytest.raises(ValueError, match="action"):
        rule_from_json({"applications": ["*"], "action": "MAYBE"})
    with pytest.raises(ValueError):
        rule_from_json(
            {"applications": ["*"], "action": "ALLOW", "conditions": {"networks": ["10.0.0.0/33"]}}
        )
    assert normalize_cidr(" 10.1.2.3/8 ") == "10.0.0.0/8"
    assert normalize_cidr("2001:DB8::1/32") == "2001:db8::/32"
    parsed = policy_from_json("p", "n", 3, [{"applications": ["*"], "action": "DENY"}])
    assert parsed.rules[0].conditions == Conditions()
    assert parse_ip("::ffff:192.0.2.1") == ipaddress.ip_address("192.0.2.1")


# ---- property: evaluate equals a straightforward reference model ---------------------------------
APPS = ["vpn", "mail", "crm"]
USERS = ["u1", "u2"]
GROUPS = ["g1", "g2", "g3"]
STATUSES = ["ACTIVE", "UNENROLLED", "DEVICES_DISABLED", "PROVISIONING_DISABLED"]
FACTORS = ["TOTP", "HARDWARE_TOKEN", "BYPASS_CODE"]
NETS = ["10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/24", "2001:db8::/32", "::1/128"]
IPS = ["10.1.2.3", "10.200.0.1", "192.168.0.9", "8.8.8.8", "2001:db8::7", "::1", "::ffff:10.1.0.1", None]


def opt(values: list[str]) -> st.SearchStrategy[list[str] | None]:
    return st.none() | st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True)


rules_st = st.builds(
    lambda apps, action, users, groups, status, factors, nets, notnets: rule_from_json(
        {
            "applications": apps,
            "action": action,
            "conditions": {
                k: v
                for k, v in {
                    "users": users,
                    "groups": groups,
                    "userStatus": status,
                    "factorTypes": factors,
                    "networks": nets,
                    "notNetworks": notnets,
                }.items()
                if v is not None
            },
        }
    ),
    st.lists(st.sampled_from([*APPS, "*"]), min_size=1, max_size=2, unique=True),
    st.sampled_from(["ALLOW", "DENY", "REQUIRE_MFA"]),
    opt(USERS),
    opt(GROUPS),
    opt(STATUSES),
    opt(FACTORS),
    opt(NETS),
    opt(NETS),
)
policies_st = st.lists(
    st.builds(
        lambda i, prio, rules: Policy(f"p{i}", f"name{i}", prio, tuple(rules)),
        st.integers(0, 10**6),
        st.integers(0, 3),
        st.lists(rules_st, max_size=4),
    ),
    max_size=4,
    unique_by=lambda p: p.id,
)
requests_st = st.builds(
    AccessRequest,
    st.sampled_from(USERS),
    st.sampled_from(STATUSES),
    st.frozensets(st.sampled_from(GROUPS), max_size=3),
    st.sampled_from(APPS),
    st.none() | st.sampled_from(FACTORS),
    st.sampled_from(IPS),
)


def reference(policies: list[Policy], request: AccessRequest) -> tuple[str, str | None, int | None]:
    ip = None
    if request.client_ip is not None:
        ip = ipaddress.ip_address(request.client_ip)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped

    def inside(nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
        return ip is not None and any(ip.version == n.version and ip in n for n in nets)

    for p in sorted(policies, key=lambda p: (p.priority, p.name, p.id)):
        for i, r in enumerate(p.rules):
            c = r.conditions
            ok = (
                ("*" in r.applications or request.application in r.applications)
                and (c.users is None or request.user_id in c.users)
                and (c.groups is None or bool(c.groups & request.group_ids))
                and (c.user_status is None or request.user_status in c.user_status)
                and (c.factor_types is None or request.factor in c.factor_types)
                and (c.networks is None or inside(c.networks))
                and (c.not_networks is None or (ip is not None and not inside(c.not_networks)))
            )
            if ok:
                return r.action, p.id, i
    return "REQUIRE_MFA", None, None


@settings(max_examples=150, deadline=None)
@given(policies_st, requests_st)
def test_evaluate_matches_the_reference_model(policies: list[Policy], request: AccessRequest) -> None:
    decision = evaluate(policies, request)
    assert (decision.action, decision.policy_id, decision.rule_index) == reference(policies, request)


@settings(max_examples=60, deadline=None)
@given(policies_st, requests_st)
def test_order_of_the_input_does_not_matter_and_the_trace_ends_at_the_decision(
    policies: list[Policy], request: AccessRequest
) -> None:
    result = explain(policies, request)
    assert evaluate(list(reversed(policies)), request) == result.decision
    if result.decision.policy_id is not None:
        last = result.trace[-1]
        assert last.matched and (last.policy_id, last.rule_index) == (
            result.decision.policy_id,
            result.decision.rule_index,
        )
        assert all(not t.matched for t in result.trace[:-1])
    else:
        assert all(not t.matched for t in result.trace)
        assert len(result.trace) == sum(len(p.rules) for p in policies)
