"""Group members: from DNs (``member``, ``uniqueMember``) and uids (``memberUid``) to anchors.

A member DN is looked up among the users read (or, for incremental runs, the users syncd already
knows), then among the groups read: a group member is a *nested* group. syncd stores direct
memberships and nesting edges; effective membership is computed by the store, which stops at groups
it has already visited, so a cycle (A in B in A) can't loop. Cycles are still reported, because they
are nearly always a mistake in the directory. Members that are neither (users outside the configured
base or filter, deleted entries left behind) are counted in a warning, not treated as errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from syncd.domain.records import SourceGroup
from syncd.sources.ldap_entries import Notes, RawGroup, dn_key

_UNIQUE_MEMBER_UID = re.compile(r"#'[01]*'B$")


def resolve(
    groups: Iterable[RawGroup],
    users_by_dn: Mapping[str, str],
    users_by_uid: Mapping[str, str],
    groups_by_dn: Mapping[str, str],
    notes: Notes,
) -> list[SourceGroup]:
    """Resolve every group's members to user and group anchors."""
    out: list[SourceGroup] = []
    for group in groups:
        users = set(group.member_users)  # one group's set at a time (the raw group is not used after this)
        group.member_users = []
        nested: set[str] = set()
        unknown = 0
        for value in group.member_dns:
            key = dn_key(_UNIQUE_MEMBER_UID.sub("", value))
            anchor = users_by_dn.get(key)
            if anchor is not None:
                users.add(anchor)
            elif (child := groups_by_dn.get(key)) is not None:
                if child != group.anchor:
                    nested.add(child)
            else:
                unknown += 1
        for uid in group.member_uids:
            anchor = users_by_uid.get(uid.casefold())
            if anchor is None:
                unknown += 1
            else:
                users.add(anchor)
        if unknown:
            notes.warn(
                "members out of scope",
                f"group {group.name}: {unknown} member(s) are not users or groups this source reads; ignored",
            )
        out.append(
            SourceGroup(
                anchor=group.anchor,
                name=group.name,
                description=group.description,
                dn=group.dn,
                member_users=frozenset(users),
                member_groups=frozenset(nested),
            )
        )
    for cycle in cycles(out):
        names = {g.anchor: g.name for g in out}
        notes.warn("group cycle", "nested groups form a cycle: " + " → ".join(names[a] for a in cycle))
    return out


def groups_by_dn(groups: Iterable[RawGroup]) -> dict[str, str]:
    return {dn_key(group.dn): group.anchor for group in groups}


def cycles(groups: Iterable[SourceGroup]) -> list[list[str]]:
    """Each cycle of nesting edges once, as a list of anchors starting and ending with the same group."""
    edges = {g.anchor: sorted(g.member_groups) for g in groups}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    found: list[list[str]] = []
    for root in sorted(edges):
        if state.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            children = edges.get(node, [])
            if index < len(children):
                stack.append((node, index + 1))
                child = children[index]
                if state.get(child) == 1:
                    found.append([*path[path.index(child) :], child])
                elif not state.get(child):
                    stack.append((child, 0))
                continue
            state[node] = 2
            path.pop()
    return found
