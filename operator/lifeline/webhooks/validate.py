"""``/validate``: refuse a bad Lifeline object before it is stored, naming the field.

The messages are :mod:`lifeline.api.validation`'s, the same ``lifeline validate`` prints and
the ``Ready`` condition carries. An UPDATE that leaves the spec as it was (kopf's own
finalizer and annotation patches, approvals, labels) is always let through, so an object
stored before a rule existed can still be annotated, finalized and deleted. A Restore's
spec is immutable: its approvals were given for exactly that spec. Then who asks is judged by
SubjectAccessReviews: a resources policy's author must read what it backs up
(:mod:`.object_authors`), an objects Restore's requester must write what it restores
(:mod:`.restore_authors`).
"""
from __future__ import annotations

import kopf

from lifeline.api import KINDS
from lifeline.api.validation import problems_in_manifest

from .object_authors import Authors
from .restore_authors import RestoreAuthors

HANDLER_ID = "validate"
RESTORE_IMMUTABLE = ("spec is immutable once a Restore is created (its approvals were given for exactly this "
                     "spec): delete it and create a new Restore, which needs new approvals")


def check(body: dict, old: dict | None, operation: str, subresource: str | None = None) -> None:
    """Raise :class:`kopf.AdmissionError` (422) when the request must be refused."""
    if subresource:
        return
    if operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec"):
        return
    if operation == "UPDATE" and body.get("kind") == "Restore":
        raise kopf.AdmissionError(RESTORE_IMMUTABLE, code=422)
    _, _, problems = problems_in_manifest(body)
    if problems:
        raise kopf.AdmissionError("; ".join(str(p) for p in problems), code=422)


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    authors, restore_authors = Authors(ctx), RestoreAuthors(ctx)

    async def validate(body, old, operation, subresource, userinfo, **_):
        body, old = dict(body), dict(old) if old is not None else None
        check(body, old, operation, subresource)
        if not subresource:
            await authors.check(body, old, operation, dict(userinfo or {}))
            await restore_authors.check(body, old, operation, dict(userinfo or {}))

    for info in KINDS:
        kopf.on.validate(info.group, info.version, info.plural, id=HANDLER_ID, registry=registry,
                         operations=["CREATE", "UPDATE"])(validate)
