"""``source.resources``: the Kubernetes objects of the policy's own namespace, each stored as one document.

Which kinds: every kind the namespace can list (what the API server's discovery serves, passed in
as :class:`Served`), less those the cluster rebuilds itself and Lifeline's own records, narrowed by
``includeKinds``/``excludeKinds``. The backup Job reads them as a ServiceAccount of its own,
``<policy>-objects``, which the operator binds to a Role granting ``get`` and ``list`` on exactly
that selection in this namespace and nothing else (:mod:`lifeline.planning.objects_reader`); a
policy can name no other namespace. The agent writes each object, without what the server sets, to
``/objects/<resource>.<group>/<name>.json`` in an emptyDir and backs that tree up like a volume
(:mod:`lifeline.agent.objects`): encrypted and deduplicated like all data, Secrets included.
"""
from __future__ import annotations

from dataclasses import dataclass

from lifeline.api.backuppolicy import ResourcesSource
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


def selection(src: ResourcesSource, served: tuple[Served, ...]) -> tuple[list[Served], list[str]]:
    """The resources the policy selects, sorted, and the ``includeKinds`` names nothing served answers to."""
    candidates = listable(served)
    unknown = [n for n in src.include_kinds if not any(r.called(n) for r in candidates)]
    chosen = [r for r in candidates
              if (not src.include_kinds or any(r.called(n) for n in src.include_kinds))
              and not any(r.called(n) for n in src.exclude_kinds)]
    return sorted(chosen, key=lambda r: (r.group, r.plural)), unknown


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
        names = ", ".join(r.name for r in chosen[:8]) + (f" and {len(chosen) - 8} more" if len(chosen) > 8 else "")
        return Availability(True, "KindsSelected",
                            f"{len(chosen)} kinds ({names}); the backup Job reads them as ServiceAccount "
                            f"{reader_name(seen.policy)}, which may only get and list those in {seen.namespace}")


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
    if not chosen:
        return chosen, Availability(False, "NothingSelected", "includeKinds and excludeKinds leave no kind to back up")
    return chosen, None


ROOM = ResourcesRoom()
