"""``source.resources``: the Kubernetes objects of the policy's own namespace, each stored as one document.

Which kinds: every kind the namespace can list (what the API server's discovery serves, passed in
as :class:`Served`), less those the cluster rebuilds itself and Lifeline's own records, narrowed by
``includeKinds``/``excludeKinds``, and in a policy's own view of discovery only the kinds its author
was checked for (:attr:`Served.unchecked`, :func:`withheld`). The backup Job reads them as a
ServiceAccount of its own, ``<policy>-objects``, which the operator binds to a Role granting ``get``
and ``list`` on exactly that selection in this namespace and nothing else
(:mod:`lifeline.planning.objects_reader`); a policy can name no other namespace. The agent writes each object, without what the server sets, to
``/objects/<resource>.<group>/<name>.json`` in an emptyDir and backs that tree up like a volume
(:mod:`lifeline.agent.objects`): encrypted and deduplicated like all data, Secrets included.
"""
from __future__ import annotations

from dataclasses import dataclass

from lifeline.api.backuppolicy import ResourcesSource
from lifeline.labels import ANN_CHECK_KINDS, ANN_CHECKED_KINDS
from lifeline.messages import ResourcePlan, ResourcesPlan, SourcePlan

from .base import Availability, BackupPod, PlanError, Seen, SourceRoom

OBJECTS_MOUNT = "/objects"
# What the cluster makes again by itself, and Lifeline's own records of past work: never backed up.
REBUILT = frozenset({
    ("", "events"), ("events.k8s.io", "events"), ("", "endpoints"), ("discovery.k8s.io", "endpointslices"),
    ("coordination.k8s.io", "leases"), ("apps", "controllerrevisions"), ("", "bindings"),
    ("dr.lifeline.io", "recoverypoints"), ("dr.lifeline.io", "restores"),
})
REBUILT_GROUPS = frozenset({"metrics.k8s.io"})  # live figures, not objects
# Kinds whose objects a controller usually makes: only those without a controlling owner are kept.
OWNED_BY_CONTROLLERS = frozenset({("", "pods"), ("apps", "replicasets"), ("batch", "jobs")})


@dataclass(frozen=True)
class Served:
    """A resource the API server serves (from discovery), at its group's preferred version."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]
    # In a policy's view of discovery (:func:`lifeline.planning.objects_reader.view`): not among the kinds
    # its author was checked for when the spec was written, so never selected (read) for that policy.
    unchecked: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def name(self) -> str:
        """As kubectl names it: ``deployments.apps``, ``configmaps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def called(self, name: str) -> bool:
        """Whether ``name`` (a resource or Kind, with or without its group) names this resource."""
        short = {self.plural, self.kind.lower()}
        return name.lower() in short | ({f"{s}.{self.group}" for s in short} if self.group else set())


def listable(served: tuple[Served, ...]) -> list[Served]:
    """The namespaced resources a backup could read, before the policy's choice."""
    return [r for r in served if r.namespaced and {"get", "list"} <= r.verbs and "/" not in r.plural
            and (r.group, r.plural) not in REBUILT and r.group not in REBUILT_GROUPS]


def _matching(src: ResourcesSource, served: tuple[Served, ...]) -> tuple[list[Served], list[str]]:
    candidates = listable(served)
    unknown = [n for n in src.include_kinds if not any(r.called(n) for r in candidates)]
    chosen = [r for r in candidates
              if (not src.include_kinds or any(r.called(n) for n in src.include_kinds))
              and not any(r.called(n) for n in src.exclude_kinds)]
    return sorted(chosen, key=lambda r: (r.group, r.plural)), unknown


def selection(src: ResourcesSource, served: tuple[Served, ...]) -> tuple[list[Served], list[str]]:
    """The resources the policy selects, sorted, and the ``includeKinds`` names nothing served answers to.

    In a policy's view of discovery, a kind its author was not checked for is served but never selected:
    it is not unknown, and it is left out (:func:`withheld` names it)."""
    chosen, unknown = _matching(src, served)
    return [r for r in chosen if not r.unchecked], unknown


def withheld(src: ResourcesSource, served: tuple[Served, ...]) -> list[Served]:
    """The kinds the policy would select that its author was not checked for (in a policy's view), sorted."""
    return [r for r in _matching(src, served)[0] if r.unchecked]


def named(kinds: list[Served], at_most: int = 8) -> str:
    """``configmaps, deployments.apps and 3 more``."""
    return ", ".join(r.name for r in kinds[:at_most]) + (f" and {len(kinds) - at_most} more"
                                                         if len(kinds) > at_most else "")


READER_SUFFIX = "-objects"
MAX_POLICY_NAME = 63 - len(READER_SUFFIX)  # the reader's name is never shortened: no two policies share one


def reader_name(policy: str) -> str:
    """The ServiceAccount (and Role, RoleBinding) the policy's backup Jobs read the objects as."""
    return f"{policy}{READER_SUFFIX}"


class ResourcesRoom(SourceRoom):
    kind = "resources"
    attribute = "resources"
    restores_into = "objects"

    def job_source(self, namespace, policy, spec, served: tuple[Served, ...] = ()) -> SourcePlan:
        src: ResourcesSource = self.settings(spec)
        chosen, problem = _selected(src, served, policy)
        if problem is not None:
            raise PlanError("SourceAvailable", problem.reason, problem.message)
        plan = ResourcesPlan(namespace=namespace, selector=src.selector.as_query() if src.selector else None,
                             status=src.include_status or None, cluster_dependencies=src.cluster_dependencies or None,
                             resources=[ResourcePlan(api_version=r.api_version, plural=r.plural, kind=r.kind,
                                                     owned=(r.group, r.plural) in OWNED_BY_CONTROLLERS or None)
                                        for r in chosen])
        return SourcePlan(kind=self.kind, name=f"{namespace}/{policy}", path=OBJECTS_MOUNT, resources=plan)

    def shape_backup_pod(self, draft: BackupPod, spec) -> None:
        draft.pod["volumes"].append({"name": "objects", "emptyDir": {}})
        draft.agent["volumeMounts"].append({"name": "objects", "mountPath": OBJECTS_MOUNT})
        # the reader's token: the pod runs only the agent (a resources source has no fingerprint)
        draft.pod["serviceAccountName"] = reader_name(draft.policy)
        draft.pod["automountServiceAccountToken"] = True

    def references(self, spec) -> list[str]:
        return []

    def availability(self, spec, seen: Seen) -> Availability:
        src = self.settings(spec)
        chosen, problem = _selected(src, seen.served, seen.policy)
        if problem is not None:
            return problem
        message = (f"{len(chosen)} kinds ({named(chosen)}); the backup Job reads them as ServiceAccount "
                   f"{reader_name(seen.policy)}, which may only get and list those in {seen.namespace}")
        left_out = withheld(src, seen.served)
        if left_out:
            message += "; " + not_checked_message(left_out, seen.policy)
        return Availability(True, "KindsSelected", message)


def again(policy: str) -> str:
    """How to have the kinds checked again: apply the policy, as someone who may read them."""
    return (f"someone who may read them applies the policy again (a change to its spec, or `kubectl annotate "
            f"backuppolicy {policy} {ANN_CHECK_KINDS}=now`)")


def not_checked_message(left_out: list[Served], policy: str) -> str:
    """The kinds selected now that were not checked against the policy's author, and what to do."""
    count = f"{len(left_out)} kind{'s' if len(left_out) != 1 else ''}"
    return (f"{count} served since the policy was written {'is' if len(left_out) == 1 else 'are'} not backed up "
            f"until {again(policy)}: {named(left_out)}")


def _selected(src: ResourcesSource, served: tuple[Served, ...], policy: str) -> tuple[list[Served], Availability | None]:
    """The kinds the policy backs up, and why it cannot be backed up (None: it can)."""
    if len(policy) > MAX_POLICY_NAME:
        return [], Availability(False, "NameTooLong",
                                f"a resources policy's name is at most {MAX_POLICY_NAME} characters (its Jobs read "
                                f"as the ServiceAccount <name>{READER_SUFFIX}, which must be its alone); rename it")
    if not served:
        return [], Availability(None, "DiscoveryPending", "the kinds the API server serves are not known yet")
    chosen, unknown = selection(src, served)
    if unknown:
        return chosen, Availability(False, "KindNotServed",
                                    f"includeKinds names {', '.join(unknown)}, which this namespace cannot list "
                                    "(kubectl api-resources --namespaced shows what can be)")
    left_out = withheld(src, served)
    if not chosen and left_out:
        return chosen, Availability(False, "KindsNotChecked", (
            f"none of the {len(left_out)} kind{'s' if len(left_out) != 1 else ''} the policy selects "
            f"({named(left_out)}) was checked against its "
            f"author: it has no record of the kinds checked under Lifeline's seal ({ANN_CHECKED_KINDS}: written "
            "before Lifeline kept one, edited past the admission webhook, or sealed with a webhook key since "
            "rotated), or they were all served after it was written. Nothing is backed up until "
            f"{again(policy)}"))
    if not chosen:
        return chosen, Availability(False, "NothingSelected", "includeKinds and excludeKinds leave no kind to back up")
    return chosen, None


ROOM = ResourcesRoom()
