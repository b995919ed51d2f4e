"""RBAC as the API server evaluates it, for the emulator's SubjectAccessReviews.

Small and honest: a request is allowed when a RoleBinding in the request's namespace
or a ClusterRoleBinding binds a subject matching the user (a User by name, a Group the
user is in, or a ServiceAccount by its ``system:serviceaccount:<ns>:<name>`` user name)
to a Role or ClusterRole with a rule matching the API group, the resource (with its
subresource as ``resource/sub``), the verb and, when the rule lists them, the name.
``*`` matches anything, as in Kubernetes. Aggregated ClusterRoles (``aggregationRule``)
get the rules of every ClusterRole their selectors' ``matchLabels`` match, computed at
evaluation time (the real aggregation controller writes them into the role). Members of
``system:masters`` are allowed everything. Denies do not exist in RBAC, so neither here.

Not evaluated: nonResourceURLs, ``matchExpressions`` in aggregation selectors.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

RBAC = "rbac.authorization.k8s.io/v1"
SUPERUSER_GROUP = "system:masters"


@dataclass(frozen=True)
class Attributes:
    """What a SubjectAccessReview's ``resourceAttributes`` asks about."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @classmethod
    def of(cls, spec: dict) -> "Attributes":
        a = spec.get("resourceAttributes") or {}
        return cls(verb=a.get("verb", ""), group=a.get("group", ""), resource=a.get("resource", ""),
                   subresource=a.get("subresource", ""), namespace=a.get("namespace", ""), name=a.get("name", ""))


# list_objects(plural, namespace or None) -> stored objects of rbac.authorization.k8s.io/v1
Lister = Callable[[str, str | None], Iterable[dict]]


def _subject_matches(subject: dict, user: str, groups: set[str], binding_namespace: str | None) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user == f"system:serviceaccount:{namespace}:{name}"
    return False


def _rule_matches(rule: dict, attrs: Attributes) -> bool:
    def has(values, wanted) -> bool:
        values = values or []
        return "*" in values or wanted in values

    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resources = rule.get("resources") or []
    resource_ok = (has(resources, resource)
                   or (attrs.subresource and f"{attrs.resource}/*" in resources)
                   or (attrs.subresource and f"*/{attrs.subresource}" in resources))
    names = rule.get("resourceNames") or []
    return (has(rule.get("apiGroups"), attrs.group) and bool(resource_ok) and has(rule.get("verbs"), attrs.verb)
            and (not names or attrs.name in names))


def _matches_labels(selector: dict, labels: dict) -> bool:
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items()) and not selector.get("matchExpressions")


def cluster_role_rules(role: dict, cluster_roles: list[dict]) -> list[dict]:
    """A ClusterRole's rules, including those it aggregates."""
    rules = list(role.get("rules") or [])
    for selector in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
        for other in cluster_roles:
            if other is not role and _matches_labels(selector, (other.get("metadata") or {}).get("labels") or {}):
                rules += other.get("rules") or []
    return rules


def _by_name(objects: Iterable[dict]) -> dict[str, dict]:
    return {(o.get("metadata") or {}).get("name"): o for o in objects}


def allowed(list_objects: Lister, user: str, groups: Iterable[str], attrs: Attributes) -> tuple[bool, str]:
    """``(allowed, reason)`` as the RBAC authorizer answers a SubjectAccessReview."""
    groups = set(groups or ())
    if SUPERUSER_GROUP in groups:
        return True, f"{user} is in {SUPERUSER_GROUP}"
    cluster_roles = list(list_objects("clusterroles", None))
    by_name = _by_name(cluster_roles)
    bindings: list[tuple[dict, str | None]] = [(b, None) for b in list_objects("clusterrolebindings", None)]
    if attrs.namespace:
        bindings += [(b, attrs.namespace) for b in list_objects("rolebindings", attrs.namespace)]
        roles = _by_name(list_objects("roles", attrs.namespace))
    else:
        roles = {}
    for binding, namespace in bindings:
        if not any(_subject_matches(s, user, groups, namespace) for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole" and ref.get("name") in by_name:
            rules = cluster_role_rules(by_name[ref["name"]], cluster_roles)
        elif ref.get("kind") == "Role" and namespace and ref.get("name") in roles:
            rules = roles[ref["name"]].get("rules") or []
        else:
            continue
        if any(_rule_matches(r, attrs) for r in rules):
            kind = "RoleBinding" if namespace else "ClusterRoleBinding"
            where = f' of {ref.get("kind")} "{ref.get("name")}"'
            return True, f'RBAC: allowed by {kind} "{binding["metadata"]["name"]}"{where} to {user}'
    return False, ""
