"""Who may read ``/metrics`` and ``/report``: the API server decides, as for kube-rbac-proxy.

A caller sends a bearer token (a ServiceAccount's, say Prometheus's); a TokenReview says whose it is
and a SubjectAccessReview whether that user may ``get`` the path (a ClusterRole with
``nonResourceURLs: [/metrics]``; the chart ships ``<release>-metrics-reader`` and
``<release>-report-reader``). Answers are kept for a short while, keyed by a hash of the token, so a
scrape every few seconds does not cost two API calls each time; a refusal is kept for less long,
so a binding made a moment ago soon counts.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from lifeline.kube import KubeError

log = logging.getLogger(__name__)

ALLOWED_FOR = 60.0
REFUSED_FOR = 5.0
MAX_KEPT = 1024  # distinct (token, path) answers; the oldest go first


@dataclass(frozen=True)
class Verdict:
    status: int  # 200, 401 (who are you?) or 403 (not you)
    reason: str = ""
    user: str = ""


class KubeCallers:
    """Authenticates and authorizes HTTP callers through the API server (``kube``: :class:`lifeline.kube.Kube`)."""

    def __init__(self, kube, *, clock: Callable[[], float] = time.monotonic):
        self._kube = kube
        self._clock = clock
        self._kept: dict[tuple[str, str], tuple[float, Verdict]] = {}

    async def judge(self, authorization: str | None, path: str) -> Verdict:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Verdict(401, "send a bearer token (a ServiceAccount's) in the Authorization header")
        key = (hashlib.sha256(token.strip().encode()).hexdigest(), path)
        now = self._clock()
        kept = self._kept.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        verdict = await self._ask(token.strip(), path)
        if verdict.status != 500:
            if len(self._kept) >= MAX_KEPT:
                self._kept.pop(next(iter(self._kept)))
            self._kept[key] = (now + (ALLOWED_FOR if verdict.status == 200 else REFUSED_FOR), verdict)
        return verdict

    async def _ask(self, token: str, path: str) -> Verdict:
        try:
            who = await self._kube.token_review(token)
            if who is None:
                return Verdict(401, "the API server does not know this token")
            allowed = await self._kube.path_review(user=who.get("username", ""), groups=list(who.get("groups") or []),
                                                   uid=who.get("uid"), extra=who.get("extra"), path=path)
        except KubeError as exc:
            log.warning("cannot judge a caller of %s: %s", path, exc)
            return Verdict(500, "cannot reach the API server to check the caller")
        user = who.get("username", "")
        if not allowed:
            return Verdict(403, f"{user} may not get {path}", user)
        return Verdict(200, "", user)
