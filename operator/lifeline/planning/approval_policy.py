"""Who must approve a Restore: the admin's approval policies, and counting approvals against one.

A hospital's rule reads "a critical restore needs the department head **and** the head of
information management", not "any two approvers". The admin writes approval policies in the chart
(``approvals.policies``, passed to the operator as JSON in ``LIFELINE_APPROVAL_POLICIES``): each
matches namespaces (globs) and, optionally, tiers of the backup being restored, and asks for N
approvals of which one must come from each named group; with ``separateTeams`` an approval from
someone in the same team as the requester (a group both are in, of those listed) does not count,
and is audited as ``same-team`` for the alert. The first policy that matches applies; none
matching means the default, two distinct approvers. A tenant cannot lower it: ``spec.requiredApprovals``
can only ask for more.

Groups come from the admission request (the webhook records, with each decision, the approver's
groups that some policy names) and count only under the webhook's seal, like the decision itself.
One person counts once: someone in both named groups fills one of them, never both.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from .admin_settings import json_list

ENV = "LIFELINE_APPROVAL_POLICIES"
MIN_APPROVALS = 2
MAX_APPROVALS = 5


class PolicyError(ValueError):
    """The admin's approval policies cannot be read: the operator says so and does not start."""


@dataclass(frozen=True)
class ApprovalPolicy:
    name: str = "default"
    namespaces: tuple[str, ...] = ()  # globs; empty: every namespace
    tiers: tuple[str, ...] = ()  # empty: every tier
    approvals: int = MIN_APPROVALS
    from_groups: tuple[str, ...] = ()  # one approval from each
    separate_teams: tuple[str, ...] = ()  # groups that are teams: no approval from the requester's own

    def applies(self, namespace: str, tier: str | None) -> bool:
        if self.namespaces and not any(fnmatch.fnmatchcase(namespace, p) for p in self.namespaces):
            return False
        return not self.tiers or tier in self.tiers


DEFAULT = ApprovalPolicy()


def _strings(value, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}: a list of non-empty strings")
    return tuple(value)


def load(text: str | None) -> tuple[ApprovalPolicy, ...]:
    """The policies of ``text`` (JSON: a list of ``{name, namespaces, tiers, approvals, fromGroups,
    separateTeams}``)."""
    out = []
    for i, item in enumerate(json_list(text, ENV, "approval policies", PolicyError)):
        where = f"approval policy {i + 1}"
        if not isinstance(item, dict):
            raise PolicyError(f"{where}: an object")
        unknown = set(item) - {"name", "namespaces", "tiers", "approvals", "fromGroups", "separateTeams"}
        if unknown:
            raise PolicyError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        name = item.get("name") or f"policy-{i + 1}"
        where = f"approval policy {name!r}"
        groups = _strings(item.get("fromGroups"), f"{where}.fromGroups")
        approvals = item.get("approvals", max(MIN_APPROVALS, len(groups)))
        if not isinstance(approvals, int) or isinstance(approvals, bool) or not MIN_APPROVALS <= approvals <= MAX_APPROVALS:
            raise PolicyError(f"{where}.approvals: {MIN_APPROVALS} to {MAX_APPROVALS} (never fewer than two people)")
        if len(set(groups)) > approvals:
            raise PolicyError(f"{where}: {len(set(groups))} groups need at least as many approvals, not {approvals}")
        out.append(ApprovalPolicy(str(name), _strings(item.get("namespaces"), f"{where}.namespaces"),
                                  _strings(item.get("tiers"), f"{where}.tiers"), approvals,
                                  tuple(dict.fromkeys(groups)),
                                  tuple(dict.fromkeys(_strings(item.get("separateTeams"), f"{where}.separateTeams")))))
    return tuple(out)


def choose(policies: Iterable[ApprovalPolicy], namespace: str, tier: str | None) -> ApprovalPolicy:
    """The first policy that matches, else the default (two distinct approvers)."""
    return next((p for p in policies if p.applies(namespace, tier)), DEFAULT)


def needs_tier(policies: Iterable[ApprovalPolicy]) -> bool:
    """Whether choosing needs the tier of the backup (then the operator looks it up)."""
    return any(p.tiers for p in policies)


def named_groups(policies: Iterable[ApprovalPolicy]) -> frozenset[str]:
    """The groups worth recording with a decision: those some policy asks for or keeps apart."""
    return frozenset(g for p in policies for g in (*p.from_groups, *p.separate_teams))


def team_groups(policies: Iterable[ApprovalPolicy]) -> frozenset[str]:
    """The groups worth recording with a request: the teams some policy keeps apart."""
    return frozenset(g for p in policies for g in p.separate_teams)


@dataclass(frozen=True)
class Tally:
    """Approvals counted against a policy."""

    policy: str
    required: int
    approvers: tuple[str, ...]
    missing_groups: tuple[str, ...]
    same_team: tuple[str, ...] = ()  # approvers not counted: in a team of the requester's

    @property
    def met(self) -> bool:
        return len(self.approvers) >= self.required and not self.missing_groups

    def summary(self) -> str:
        said = f"{len(self.approvers)} of {self.required} approvals"
        if self.approvers:
            said += f" ({', '.join(self.approvers)})"
        if self.missing_groups:
            said += "; still needed: one from " + " and one from ".join(self.missing_groups)
        if self.same_team:
            said += f"; not counted, same team as the requester: {', '.join(self.same_team)}"
        return said


def _cover(groups: tuple[str, ...], members: dict[str, frozenset[str]]) -> dict[str, str]:
    """A largest assignment of groups to distinct people in them (augmenting paths; a few of each)."""
    holder: dict[str, str] = {}  # person -> group they fill

    def place(group: str, tried: set[str]) -> bool:
        for person, theirs in members.items():
            if group not in theirs or person in tried:
                continue
            tried.add(person)
            if person not in holder or place(holder[person], tried):
                holder[person] = group
                return True
        return False

    for group in groups:
        place(group, set())
    return {g: p for p, g in holder.items()}


def same_team(policy: ApprovalPolicy, approver_groups, requester_groups) -> tuple[str, ...]:
    """The teams (of the policy's ``separateTeams``) an approver shares with the requester."""
    return tuple(g for g in policy.separate_teams if g in set(approver_groups) & set(requester_groups))


def tally(policy: ApprovalPolicy, approvals: list[dict], requested: int = MIN_APPROVALS,
          requester_groups: Iterable[str] = ()) -> Tally:
    """Count ``approvals`` (``{"user", "groups"}``, the requester already left out, one per person);
    ``requester_groups``: the requester's groups the webhook recorded (for ``separateTeams``)."""
    requester_groups = frozenset(requester_groups)
    apart = {a["user"] for a in approvals if same_team(policy, a.get("groups") or (), requester_groups)}
    members = {a["user"]: frozenset(a.get("groups") or ()) for a in approvals if a["user"] not in apart}
    filled = _cover(policy.from_groups, members)
    required = max(policy.approvals, requested, len(policy.from_groups))
    return Tally(policy.name, required, tuple(members), tuple(g for g in policy.from_groups if g not in filled),
                 tuple(a["user"] for a in approvals if a["user"] in apart))
