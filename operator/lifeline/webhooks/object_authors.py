"""A resources source backs up only what its author may read.

The backup Job reads the objects as an account of its own that may read every kind the policy
selects, Secrets included, and the points can be restored into a volume the author reads. So whoever
creates a BackupPolicy with ``source.resources``, or changes its spec, must be allowed to ``list``
each selected kind in the namespace themselves (a SubjectAccessReview per kind, with the identity of
the admission request); otherwise the request is refused naming the kinds. Someone who may create
BackupPolicies but not read Secrets cannot copy them out through a backup.
"""
from __future__ import annotations

import asyncio

import kopf

from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.kube import KubeError
from lifeline.sources.resources import selection


class Authors:
    def __init__(self, ctx):
        self.kube = ctx.kube
    async def check(self, body: dict, old: dict | None, operation: str, userinfo: dict) -> None:
        """Refuse (403) a resources policy whose author may not list every kind it selects."""
        spec = body.get("spec") or {}
        if body.get("kind") != "BackupPolicy" or not isinstance((spec.get("source") or {}).get("resources"), dict):
            return
        if operation == "UPDATE" and old is not None and old.get("spec") == spec:
            return
        namespace = (body.get("metadata") or {}).get("namespace", "")
        user, groups = userinfo.get("username") or "", list(userinfo.get("groups") or ())
        try:
            chosen, _ = selection(BackupPolicySpec.model_validate(spec).source.resources, await self.kube.discover())
            allowed = await asyncio.gather(*(
                self.kube.access_review(user=user, groups=groups, namespace=namespace, verb="list", group=r.group,
                                        resource=r.plural, uid=userinfo.get("uid"), extra=userinfo.get("extra"))
                for r in chosen))
        except KubeError as exc:
            raise kopf.AdmissionError(f"could not check what {user} may read in {namespace} ({exc}); try again",
                                      code=503) from None
        denied = [r.name for r, ok in zip(chosen, allowed) if not ok]
        if denied:
            raise kopf.AdmissionError(
                f"{user} may not list {', '.join(denied)} in {namespace}: a resources source backs up only what "
                "its author may read; leave those kinds out (excludeKinds, or a narrower includeKinds) or ask "
                "someone who may read them to apply the policy", code=403)
