"""The operator's admission webhooks, served by kopf.

Four endpoints (handler ids are the URL paths, as the chart's webhook configurations expect):

- ``/validate`` (validating; all five dr.lifeline.io kinds; CREATE and UPDATE): a bad spec
  is refused with the same field-path messages as ``lifeline validate``
  (:mod:`lifeline.webhooks.validate`);
- ``/restore-approvals`` (mutating; restores; CREATE and UPDATE): records the requester and
  turns ``dr.lifeline.io/approve``/``reject`` annotations into approval records, with the
  identity from the admission request (:mod:`lifeline.webhooks.approvals`);
- ``/shred-approvals`` (mutating; recoverypoints; UPDATE): who asked to destroy a point's keys and
  who approved it (:mod:`lifeline.webhooks.shred_approvals`);
- ``/policy-authors`` (mutating; backuppolicies; CREATE and UPDATE): the kinds a resources policy's
  author is checked for, recorded and sealed for ``/validate`` and the operator
  (:mod:`lifeline.webhooks.object_authors`).

They exist only when the operator runs with ``--webhook-port`` (kopf refuses admission
handlers without a server), see :func:`register` and :func:`server`.
"""
from __future__ import annotations

import kopf

from . import approvals, object_authors, shred_approvals, validate
from .server import server

__all__ = ["register", "server"]


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    """Add the webhooks' handlers to ``registry`` (only when the server is configured)."""
    validate.register(registry, ctx)
    approvals.register(registry, ctx)
    shred_approvals.register(registry, ctx)
    object_authors.register(registry, ctx)
