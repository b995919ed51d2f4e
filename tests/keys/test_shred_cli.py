"""`lifeline shred request|approve|status`: reviewed destruction through the CLI, on the real API server.

The story of test_shred_deletion's ``test_one_persons_word_never_destroys_keys``, told through the
commands as the people run them, each with a kubeconfig of their own (client certificates of the
cluster's PKI, the namespace in its context): carol asks and deletes, her own approval is refused in
the webhook's words, frank (a shred reviewer) approves; ``status`` says what is missing before and
who did what after, as the operator's ``ShredApproved`` condition says it.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
from datetime import timedelta
from pathlib import Path

from lifeline.cli import main
from lifeline.clock import rfc3339
from lifeline.planning import recoverypoint_shred as shred
from lifeline.planning import shred_approval
from tests.backup.conftest import (clock, cond, fast_timers, key_text, seeded,  # noqa: F401
                                   volumes)
from tests.keys.test_shred_deletion import (_finalized, _one_point, points, reviewers,  # noqa: F401
                                            shred_jobs, vault_policy)


async def lifeline(kubeconfig: Path, *argv: str) -> tuple[int, str, str]:
    """``lifeline ARGV --kubeconfig KUBECONFIG`` in this process: (exit code, stdout, stderr). In a thread,
    as the command runs its own event loop (the operator runs in another thread)."""
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main([*argv, "--kubeconfig", str(kubeconfig)])
    code = await asyncio.to_thread(run)
    return code, out.getvalue(), err.getvalue()


async def test_people_ask_approve_and_follow_a_shred_through_the_cli(
        kube, seeded, clock, vault_policy, audit_records, reviewers, tmp_path):
    transit, body = vault_policy
    body["spec"]["destinations"] = body["spec"]["destinations"][:1]
    carol, frank = (kube.cluster.kubeconfig_for(u, tmp_path / f"kubeconfig-{u}", namespace=kube.namespace)
                    for u in ("carol", "frank"))

    def approved() -> dict:
        return cond(points(kube).get(name), "ShredApproved")

    async with kube.operator(clock=clock):
        name = await _one_point(kube, body)
        code, _, err = await lifeline(carol, "shred", "request", "no-such-point", "--reason", "cleanup")
        assert code == 2 and "404" in err, err
        code, out, _ = await lifeline(frank, "shred", "status", name)
        assert code == 0 and "requested by:   nobody yet" in out and "lifeline shred request" in out, out

        # a point its policy does not shred is refused before anything is written
        kube.patch("BackupPolicy", "pacs", {"spec": {"deletionPolicy": "Retain"}})
        await kube.wait_for(lambda: shred.FINALIZER not in (points(kube)[name]["metadata"].get("finalizers") or []))
        code, _, err = await lifeline(carol, "shred", "request", name, "--reason", "cleanup", "--delete")
        assert code == 1 and "deletionPolicy: Retain" in err and "nothing was written" in err, err
        assert not points(kube)[name]["metadata"].get("deletionTimestamp")
        kube.patch("BackupPolicy", "pacs", {"spec": {"deletionPolicy": "Shred"}})
        await _finalized(kube, name)
        # once approved, the operator waits a minute of the test's clock (as after a failed attempt):
        # long enough to read the approved state
        kube.patch("RecoveryPoint", name, {"metadata": {"annotations": {
            shred.ANN_RETRY_AFTER: rfc3339(clock.now() + timedelta(seconds=60))}}})

        code, out, err = await lifeline(carol, "shred", "request", name, "-n", kube.namespace,
                                        "--reason", "retention: study data past its period", "--delete")
        assert code == 0, err
        assert "requested by carol: retention: study data past its period" in out and "finalizer holds it" in out
        stored = points(kube)[name]["metadata"]
        assert stored["deletionTimestamp"] and stored["annotations"][shred_approval.ANN_REQUESTED_BY] == "carol"

        code, _, err = await lifeline(carol, "shred", "approve", name, "--comment", "mine")
        assert code == 1 and "carol asked for this shred and cannot approve it" in err, err

        await kube.wait_for(lambda: "carol asked" in approved().get("message", ""), timeout=20)
        code, out, _ = await lifeline(frank, "shred", "status", name)
        assert code == 0
        assert "requested by:   carol -- retention: study data past its period" in out, out
        assert "approved by:    nobody yet" in out and "ShredApproved:  False (AwaitingApproval): carol asked" in out
        assert f"a second person (not carol) holding the lifeline-shred-reviewer role approves: lifeline shred " \
               f"approve {name} -n {kube.namespace}" in out

        code, out, err = await lifeline(frank, "shred", "approve", name, "-m", "checked the retention period")
        assert code == 0 and f"approval recorded on {kube.namespace}/{name} as frank" in out, err
        assert "next:           nothing from people" in out
        await kube.wait_for(lambda: approved().get("status") == "True", timeout=20)
        code, out, _ = await lifeline(frank, "shred", "status", name)
        assert "    frank at " in out and "(checked the retention period)" in out, out
        assert "ShredApproved:  True (Approved): asked by carol, approved by frank" in out
        assert "next:           nothing from people" in out
        assert not shred_jobs(kube)

        clock.advance(61)
        await kube.wait_for(lambda: name not in points(kube), timeout=60)
        code, _, err = await lifeline(frank, "shred", "status", name)
        assert code == 2 and "404" in err, err
    [done] = [r for r in audit_records if r["action"] == "key-shred" and r["outcome"] == "succeeded"]
    assert (done["actor"], done["details"]["approvedBy"]) == ("carol", "frank")
