"""The access review: per namespace, who holds each Lifeline right, from the cluster's own RBAC.

A hospital reviews every quarter "who can back up, restore, destroy, audit". The answer is in the
RoleBindings and ClusterRoleBindings that name Lifeline's ClusterRoles (and Kubernetes' admin, edit
and view, into which the chart folds some of them). This reads them as they are; it does not
evaluate RBAC (a custom role granting the same verbs is not seen: the review lists the roles
Lifeline ships, and says so).
"""
from __future__ import annotations

# Lifeline's rights, and the ClusterRoles that carry each (the chart's people-roles.yaml; admin, edit
# and view by its default aggregation).
RIGHTS: dict[str, tuple[str, ...]] = {
    "back up (policies, backup now)": ("lifeline-backup-operator", "lifeline-admin", "admin", "edit"),
    "run restore drills": ("lifeline-drill-operator", "lifeline-admin", "admin", "edit"),
    "request restores": ("lifeline-admin", "admin"),
    "approve restores": ("lifeline-restore-approver",),
    "approve key destruction (shred)": ("lifeline-shred-reviewer",),
    "fail over": ("lifeline-failover-operator", "lifeline-admin", "admin"),
    "read and audit": ("lifeline-auditor", "lifeline-admin", "admin", "edit", "view"),
}
ROLES = frozenset(r for roles in RIGHTS.values() for r in roles)
EVERY_NAMESPACE = "(every namespace)"


def _subjects(binding: dict) -> list[str]:
    out = []
    for s in binding.get("subjects") or []:
        kind, name = s.get("kind"), s.get("name")
        if kind == "ServiceAccount":
            out.append(f"ServiceAccount {s.get('namespace', '')}/{name}")
        elif kind in ("User", "Group"):
            out.append(f"{kind} {name}")
    return out


def review(rolebindings: list[dict], clusterrolebindings: list[dict]) -> dict[str, dict[str, list[str]]]:
    """``{namespace: {right: [subjects, ...]}}``; cluster-wide grants under :data:`EVERY_NAMESPACE`."""
    out: dict[str, dict[str, set[str]]] = {}

    def grant(namespace: str, role: str, subjects: list[str]) -> None:
        for right, roles in RIGHTS.items():
            if role in roles:
                out.setdefault(namespace, {}).setdefault(right, set()).update(subjects)

    for b in clusterrolebindings:
        ref = b.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole" and ref.get("name") in ROLES:
            grant(EVERY_NAMESPACE, ref["name"], _subjects(b))
    for b in rolebindings:
        ref = b.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole" and ref.get("name") in ROLES:
            grant((b.get("metadata") or {}).get("namespace", ""), ref["name"], _subjects(b))
    return {ns: {right: sorted(who) for right, who in rights.items()}
            for ns, rights in sorted(out.items(), key=lambda kv: (kv[0] != EVERY_NAMESPACE, kv[0]))}
