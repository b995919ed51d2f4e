"""Objects in the states the health checks must tell apart, built the way the operator writes them."""
from __future__ import annotations

import copy

API = "dr.lifeline.io/v1alpha1"


def cond(type_: str, status: str, reason: str, message: str = "", generation: int = 1) -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": "2026-11-23T10:00:00Z"}


def obj(kind: str, *conditions: dict, generation: int = 1, observed: int | None = 1, spec: dict | None = None,
        **status) -> dict:
    body = {"apiVersion": API, "kind": kind, "metadata": {"name": "x", "namespace": "hospital",
                                                          "generation": generation},
            "spec": spec or {}}
    st = dict(status)
    if observed is not None:
        st["observedGeneration"] = observed
    if conditions:
        st["conditions"] = list(conditions)
    if st:
        body["status"] = st
    return copy.deepcopy(body)


READY = cond("Ready", "True", "SpecValid", "spec is valid")
INVALID = (cond("Ready", "False", "InvalidSpec", "spec.tier: Input should be 'A', 'B' or 'C'"),
           cond("Stalled", "True", "InvalidSpec", "spec.tier: Input should be 'A', 'B' or 'C'"))
