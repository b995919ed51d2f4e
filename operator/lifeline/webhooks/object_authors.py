"""A resources source backs up only what its author was checked for.

The backup Job reads the objects as an account of its own that may read every kind the policy
selects, Secrets included, and the points can be restored into a volume the author reads. So whoever
creates a BackupPolicy with ``source.resources``, or changes its spec, must be allowed to ``list``
each selected kind in the namespace themselves (a SubjectAccessReview per kind, with the identity of
the admission request); otherwise the request is refused naming the kinds. Someone who may create
BackupPolicies but not read Secrets cannot copy them out through a backup.

What was checked is recorded, so that a kind served later (a CRD someone else installs, with
sensitive data, when the policy has no ``includeKinds``) is never read without a check. Two
handlers:

- ``/policy-authors`` (mutating, called before any validating webhook): on CREATE, on an UPDATE of
  the spec, and on a request ``dr.lifeline.io/check-kinds`` (consumed), it records the kinds the
  policy selects now (discovery) in ``dr.lifeline.io/checked-kinds``, the request's user in
  ``dr.lifeline.io/checked-for``, and seals both with the policy's namespace, name and spec
  (:func:`lifeline.planning.objects_reader.seal`, the key of :mod:`.seal_key`). Any other request that
  changes the record is refused (one that leaves the keys out, as a ``replace`` or a server-side
  apply may, keeps them as they were): the record is the webhook's alone.
- ``/validate`` (:meth:`Authors.check`): the user of a request that wrote a record must be allowed to
  ``list`` exactly the recorded kinds. A request without a sealed record of its own user (the mutating
  webhook did not run) is refused.

The operator grants the policy's reader only recorded kinds that are selected now
(:mod:`lifeline.planning.objects_reader`) and names the others in ``SourceAvailable``.
"""
from __future__ import annotations

import asyncio

import kopf
from pydantic import ValidationError

from lifeline.api import BACKUP_POLICY as INFO
from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.kube import KubeError
from lifeline.labels import ANN_CHECK_KINDS, ANN_CHECKED_FOR, ANN_CHECKED_KINDS, ANN_CHECKED_SEAL
from lifeline.planning import objects_reader
from lifeline.planning.objects_writer import record, recorded
from lifeline.sources.resources import selection

from .seal_key import seal_key

HANDLER_ID = "policy-authors"


def _resources(body: dict) -> bool:
    return body.get("kind") == "BackupPolicy" and \
        isinstance(((body.get("spec") or {}).get("source") or {}).get("resources"), dict)


def _annotations(body: dict | None) -> dict:
    return ((body or {}).get("metadata") or {}).get("annotations") or {}


def _patched(patch) -> dict:
    return patch.setdefault("metadata", {}).setdefault("annotations", {})


class Authors:
    def __init__(self, ctx):
        self.kube = ctx.kube
        self.options = ctx.options

    async def _selected(self, spec: dict, user: str, namespace: str) -> str | None:
        """The kinds the spec selects now, as recorded (None: the spec is not valid, which /validate refuses)."""
        try:
            src = BackupPolicySpec.model_validate(spec).source.resources
        except ValidationError:
            return None
        try:
            chosen, _ = selection(src, await self.kube.discover())
        except KubeError as exc:
            raise kopf.AdmissionError(f"could not read what the API server serves, to check {user} for what "
                                      f"the policy selects in {namespace} ({exc}); try again", code=503) from None
        return record(chosen)

    async def record(self, body: dict, old: dict | None, operation: str, userinfo: dict, patch) -> None:
        """The mutating half: record (and seal) the kinds the request's user is checked for."""
        if body.get("kind") != "BackupPolicy":
            return
        new_ann = _annotations(body)
        old_ann = _annotations(old) if operation == "UPDATE" else {}
        if not _resources(body):  # no record means anything on another source
            for key in (*objects_reader.RECORD, ANN_CHECK_KINDS):
                if key in new_ann:
                    _patched(patch)[key] = None
            return
        spec = body.get("spec") or {}
        asked = ANN_CHECK_KINDS in new_ann
        if operation == "CREATE" or asked or (old or {}).get("spec") != spec:
            user = userinfo.get("username") or ""
            namespace = (body.get("metadata") or {}).get("namespace", "")
            kinds = await self._selected(spec, user, namespace)
            annotations = _patched(patch)
            if asked:
                annotations[ANN_CHECK_KINDS] = None  # consumed: the next `kubectl annotate` needs no --overwrite
            if kinds is None or not user:
                for key in objects_reader.RECORD:
                    if key in new_ann:
                        annotations[key] = None
                return
            annotations[ANN_CHECKED_KINDS] = kinds
            annotations[ANN_CHECKED_FOR] = user
            annotations[ANN_CHECKED_SEAL] = objects_reader.seal(seal_key(self.options), body, user, kinds)
            return
        # the spec is as it was, and nobody asked for a check: the record stays the webhook's
        edited = [key for key in objects_reader.RECORD if key in new_ann and new_ann[key] != old_ann.get(key)]
        if edited:
            name = (body.get("metadata") or {}).get("name", "NAME")
            raise kopf.AdmissionError(
                f"{', '.join(edited)} {'is' if len(edited) == 1 else 'are'} written by Lifeline's admission "
                f"webhook only: to have the kinds the policy selects checked for you (and recorded), "
                f"`kubectl annotate backuppolicy {name} {ANN_CHECK_KINDS}=now`", code=403)
        for key in objects_reader.RECORD:
            if key not in new_ann and key in old_ann:  # left out (a replace, an apply of a manifest): kept
                _patched(patch)[key] = old_ann[key]

    async def check(self, body: dict, old: dict | None, operation: str, userinfo: dict) -> None:
        """The validating half: refuse (403) a request whose user may not list every kind recorded for them."""
        if not _resources(body):
            return
        new_ann = _annotations(body)
        if operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec") and \
                all(new_ann.get(k) == _annotations(old).get(k) for k in objects_reader.RECORD):
            return  # nothing written that a check stands behind
        namespace = (body.get("metadata") or {}).get("namespace", "")
        user, groups = userinfo.get("username") or "", list(userinfo.get("groups") or ())
        kinds = objects_reader.checked(body, seal_key(self.options))
        if kinds is None or new_ann.get(ANN_CHECKED_FOR) != user:
            # the mutating webhook records them on every resources policy it admits: without it nothing
            # here would say what the reader may later be given
            raise kopf.AdmissionError(
                f"this BackupPolicy carries no record, sealed by Lifeline's mutating admission webhook "
                f"({HANDLER_ID}), of the kinds {user} is checked for ({ANN_CHECKED_KINDS}): it did not run on "
                "this request; is it registered?", code=403)
        chosen = recorded(kinds)
        try:
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


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    authors = Authors(ctx)

    @kopf.on.mutate(INFO.group, INFO.version, INFO.plural, id=HANDLER_ID, registry=registry,
                    operations=["CREATE", "UPDATE"])
    async def policy_authors(body, old, operation, userinfo, patch, subresource, **_):
        if subresource:
            return
        await authors.record(dict(body), dict(old) if old is not None else None, operation, dict(userinfo or {}),
                             patch)
