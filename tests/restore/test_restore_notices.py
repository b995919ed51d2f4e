"""A Restore tells the targets it names: when it is requested (approvers are wanted) and how it ended;
the same table serves drills and policies (lifeline.planning.notices)."""
from __future__ import annotations

import json

from lifeline.devstack.notice_receiver import NoticeReceiver
from lifeline.planning.notices import notice

from .conftest import APPROVERS, REQUESTER, restore_body
from .helpers import decide, phase


async def test_a_restore_tells_the_wards_and_the_chat_it_was_requested_and_how_it_ended(
        kube, clock, fast_env, people, tmp_path):
    receiver = await NoticeReceiver(tmp_path / "notices.jsonl").start()
    try:
        async with kube.operator(clock=clock, notification_targets=json.dumps(receiver.targets())):
            body = restore_body(point="no-such-point", notify=["ward-screens", "oncall-dingtalk"])
            kube.create(body, user=REQUESTER)
            name = body["metadata"]["name"]
            await kube.wait_for(lambda: phase(kube, name) == "PendingApproval")
            for person in APPROVERS:
                assert (await decide(people[person], "approve", name, kube.namespace))[0] == 0
            await kube.wait_for(lambda: phase(kube, name) == "Failed")  # its point does not exist
            await kube.wait_for(lambda: len(receiver.titles("ward-screens")) == 2
                                and len(receiver.titles("dingtalk")) == 2, timeout=30)
    finally:
        await receiver.stop()
    assert receiver.titles("ward-screens") == ["RestoreRequested", "RestoreFailed"]
    assert receiver.titles("dingtalk")[0] == (f"Restore {kube.namespace}/{name}: a restore was requested and waits "
                                             "for its approvals")
    failed = [b for t, b in receiver.received if t == "ward-screens"][-1]
    assert failed["severity"] == "critical" and "RecoveryPoint no-such-point does not exist" in failed["message"]


def test_drills_and_policies_tell_people_what_matters():
    def said(kind, event):
        found = notice(kind, event, "his", "x", "m", "t")
        return found and (found.summary, found.severity)
    assert said("RestoreDrill", "DrillFailed") == (
        "RestoreDrill his/x: a restore drill failed: the backups may not be restorable", "critical")
    assert said("RestoreDrill", "DrillRTOMissed")[1] == "warning"
    assert said("RestoreDrill", "DrillSucceeded") is None  # a passed drill is no news
    assert said("BackupPolicy", "RPOBreached")[1] == "critical" and said("BackupPolicy", "RPORecovered")[1] == "warning"
    assert said("BackupPolicy", "BackupFailed")[1] == "warning" and said("BackupPolicy", "BackupSucceeded") is None
