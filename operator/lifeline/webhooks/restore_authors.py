"""An objects Restore asks for no more than its requester may do.

When an objects Restore (``spec.target.objects``) runs in this cluster, the operator makes it an
account (:mod:`lifeline.planning.objects_writer`) that may ``get``, ``create`` and ``update`` every
kind the point's policy selects in the target namespace, ``escalate`` and ``bind`` Roles and
``bind`` ClusterRoles when Roles or RoleBindings are among them, and make Jobs for the claims'
data. So whoever creates such a Restore must be allowed that themselves in the target namespace,
asked of the API server with the identity of the admission request (SubjectAccessReviews, as
:mod:`lifeline.webhooks.object_authors` does for a policy's author): ``create`` and ``get`` of each
selected kind, ``update`` too when ``existing: Update``, ``escalate`` on roles and ``bind`` on
roles and clusterroles when roles or rolebindings are selected, ``create`` of jobs with
``withData``. Into another cluster (``kubeconfigSecret``) the kubeconfig's identity writes, judged by
that cluster's RBAC; what is asked here is only whether the requester may ``get`` that Secret
themselves: someone who cannot read the kubeconfig must not make Lifeline use it.

Which kinds: those the mutating webhook recorded on this very request
(:mod:`lifeline.webhooks.approvals`, which the API server calls before any validating webhook): the
policy's selection as :func:`selected` read it, in ``dr.lifeline.io/checked-kinds`` under the
approvals' seal. The check reads that record rather than the policy again, so what is checked is
exactly what the controller later gives the writer at most
(:func:`lifeline.planning.objects_writer.writable`), however the policy changes in between. A point
or policy that cannot be found is recorded as no kinds, and admitted: that Restore cannot start.

A refusal (403) names the first permissions missing, kind and verb. The reviews run a few at a
time (:data:`IN_FLIGHT`) and stop at the first batch that finds one missing, so a request costs at
most one review per permission of the selection and a refusal usually far fewer.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import kopf
from pydantic import ValidationError

from lifeline.api import BACKUP_POLICY, RECOVERY_POINT
from lifeline.api.backuppolicy import ResourcesSource
from lifeline.kube import KubeError
from lifeline.labels import ANN_CHECKED_KINDS
from lifeline.planning import objects_writer
from lifeline.sources.resources import Served, selection

RBAC = "rbac.authorization.k8s.io"
IN_FLIGHT = 8  # reviews asked at once: the API client runs each call in a thread of a small shared pool
NAMED = 6  # missing permissions named in a refusal


@dataclass(frozen=True)
class Need:
    """One permission the requester must hold: ``verb`` on ``resource`` of ``group`` in ``namespace``."""

    verb: str
    group: str
    resource: str
    namespace: str
    name: str | None = None

    def __str__(self) -> str:
        kind = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {kind}/{self.name}" if self.name else f"{self.verb} {kind}"


def needs(spec: dict, namespace: str, chosen) -> list[Need]:
    """What the writer account would be given (or, for another cluster, the kubeconfig Secret's read),
    in the order a refusal names it: kind by kind, then what the Job needs besides. ``chosen``: kinds
    with ``group`` and ``plural`` (:class:`~lifeline.planning.objects_writer.Kind`, ``Served``)."""
    target = spec.get("target") or {}
    objects = target.get("objects") or {}
    secret = objects.get("kubeconfigSecret")
    if isinstance(secret, dict):
        return [Need("get", "", "secrets", namespace, secret.get("name") or "")]
    where = target.get("namespace") or namespace
    verbs = ("create", "get", "update") if objects.get("existing") == "Update" else ("create", "get")
    out = [Need(verb, r.group, r.plural, where) for r in chosen for verb in verbs]
    if any(r.group == RBAC and r.plural in ("roles", "rolebindings") for r in chosen):
        out += [Need("escalate", RBAC, "roles", where), Need("bind", RBAC, "roles", where),
                Need("bind", RBAC, "clusterroles", where)]
    if objects.get("withData", True):  # the data Jobs: made and watched there, their Pods read for a failure
        out += [Need("create", "batch", "jobs", where), Need("get", "batch", "jobs", where),
                Need("list", "", "pods", where)]
    return out


def checks_kinds(body: dict) -> bool:
    """Is ``body`` an objects Restore into this cluster, whose requester is checked kind by kind?"""
    objects = ((body.get("spec") or {}).get("target") or {}).get("objects")
    return body.get("kind") == "Restore" and isinstance(objects, dict) \
        and not isinstance(objects.get("kubeconfigSecret"), dict)


async def selected(kube, namespace: str, point_name: str) -> list[Served]:
    """The kinds the point's policy selects now (discovery), or none when there is nothing to select from.

    Called by the mutating webhook at CREATE, which records the answer for the check here and for the
    controller. A point or policy that cannot be found selects nothing: such a Restore is admitted and
    cannot start (the controller sets it Failed, RecoveryPointNotFound, PolicyNotFound, or with both
    there by then KindsNotChecked, and makes no writer); refusing here would only trade that status,
    which says what to do, for a webhook error. The same for a point whose policy is not a resources
    one (the controller refuses the target) or no longer valid (it reports the policy invalid).
    """
    point = await kube.get(RECOVERY_POINT, namespace, point_name, missing_ok=True) if point_name else None
    policy_name = ((point or {}).get("spec") or {}).get("policyName")
    if not policy_name:
        return []
    policy = await kube.get(BACKUP_POLICY, namespace, policy_name, missing_ok=True)
    resources = (((policy or {}).get("spec") or {}).get("source") or {}).get("resources")
    if not isinstance(resources, dict):
        return []
    try:
        src = ResourcesSource.model_validate(resources)
    except ValidationError:
        return []
    chosen, _ = selection(src, await kube.discover())
    return chosen


class RestoreAuthors:
    def __init__(self, ctx):
        self.kube = ctx.kube

    async def check(self, body: dict, old: dict | None, operation: str, userinfo: dict) -> None:
        """Refuse (403) an objects Restore whose requester may not do what its writer would."""
        spec = body.get("spec") or {}
        target = spec.get("target") or {}
        if body.get("kind") != "Restore" or operation != "CREATE" or not isinstance(target.get("objects"), dict):
            return  # a Restore's spec never changes after CREATE (validate.RESTORE_IMMUTABLE)
        namespace = (body.get("metadata") or {}).get("namespace", "")
        user, groups = userinfo.get("username") or "", list(userinfo.get("groups") or ())
        try:
            if isinstance(target["objects"].get("kubeconfigSecret"), dict):
                wanted = needs(spec, namespace, ())
            else:
                annotations = (body.get("metadata") or {}).get("annotations") or {}
                if annotations.get(ANN_CHECKED_KINDS) is None:
                    # the mutating webhook records them on every objects Restore it admits: without it
                    # nothing here would say what the writer may later be given
                    raise kopf.AdmissionError(
                        f"this Restore carries no record of the kinds its requester is checked for "
                        f"({ANN_CHECKED_KINDS}): Lifeline's mutating admission webhook (restore-approvals) did "
                        "not run on this request; is it registered?", code=403)
                chosen = objects_writer.recorded(annotations[ANN_CHECKED_KINDS])
                if not chosen:
                    return  # no point or policy to select any (or none selected): it cannot start
                wanted = needs(spec, namespace, chosen)
            missing, more = await self._first_missing(wanted, user, groups, userinfo)
        except KubeError as exc:
            raise kopf.AdmissionError(f"could not check what {user} may do in {namespace} ({exc}); try again",
                                      code=503) from None
        if not missing:
            return
        where = missing[0].namespace
        named = ", ".join(str(n) for n in missing[:NAMED]) + (", ..." if more or len(missing) > NAMED else "")
        if missing[0].name is not None:
            raise kopf.AdmissionError(
                f"{user} may not {named} in {where}: the restore would act in the other cluster with the "
                "kubeconfig in that Secret, so only someone who may read it may ask for it", code=403)
        raise kopf.AdmissionError(
            f"{user} may not {named} in {where}: an objects restore writes as an account that may do no more "
            "than its requester; ask someone who may do that there to request it, or restore a point of a "
            "policy that selects fewer kinds", code=403)

    async def _first_missing(self, wanted: list[Need], user: str, groups: list[str],
                             userinfo: dict) -> tuple[list[Need], bool]:
        """The missing permissions of the first batch that has any, and whether some were never asked."""
        for start in range(0, len(wanted), IN_FLIGHT):
            batch = wanted[start:start + IN_FLIGHT]
            allowed = await asyncio.gather(*(
                self.kube.access_review(user=user, groups=groups, namespace=n.namespace, verb=n.verb, group=n.group,
                                        resource=n.resource, name=n.name, uid=userinfo.get("uid"),
                                        extra=userinfo.get("extra"))
                for n in batch))
            missing = [n for n, ok in zip(batch, allowed) if not ok]
            if missing:
                return missing, start + IN_FLIGHT < len(wanted)
        return [], False
