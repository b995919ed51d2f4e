"""One destination's child agent, seen from the Job that runs it: the environment it gets from its
:class:`~lifeline.messages.DestinationPlan`, and the words of its stderr that say why it failed.

Here, beside the plan, so that every Job running one child per destination (backup, restore,
shred) reads a plan's destination and reports a child's failure the same way.
"""
from __future__ import annotations

from .plans import PLAN_ENV, DestinationPlan


def destination_env(dest: DestinationPlan, base: dict) -> dict:
    """The environment of one destination's agent: only its own S3 credentials, and no plan."""
    env = {k: v for k, v in base.items() if not k.startswith("LIFELINE_S3_") and k != PLAN_ENV}
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(k, None)
    if dest.credentials_env:
        env["AWS_ACCESS_KEY_ID"] = base.get(dest.credentials_env + "ACCESS_KEY_ID", "")
        env["AWS_SECRET_ACCESS_KEY"] = base.get(dest.credentials_env + "SECRET_ACCESS_KEY", "")
    if dest.endpoint:
        env["AWS_ENDPOINT_URL"] = dest.endpoint
    if dest.region:
        env["AWS_REGION"] = dest.region
    return env


def stderr_tail(text: str, limit: int = 300) -> str:
    """The useful end of an agent's stderr: its last error line(s), trimmed."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()] or lines
    out = " ".join(errors[-2:])
    prefix = "lifeline agent "
    out = out.replace(prefix + "backup: error: ", "").replace(prefix + "prune: error: ", "")
    out = out.replace(prefix + "init: error: ", "")
    return out if len(out) <= limit else out[: limit - 1] + "…"
