"""volumeSnapshot sources end to end: a CronJob's trigger → the operator's VolumeSnapshot (cut by the
devstack's fake CSI snapshotter) → a PVC made from it → the data-mover Job running the real agent →
a RecoveryPoint whose data equals the source at the moment of the cut → temporary objects removed.
Plus the failure paths (missing class, driver error, timeout) and hooks (order, failure)."""
from __future__ import annotations

import filecmp
import subprocess
import sys

import kmock
import pytest

from lifeline.api import BY_KIND
from lifeline.devstack.snapshotter import FakeSnapshotter
from lifeline.observability import audit
from lifeline.planning import conditions
from tests.integration.operator_harness import metric, running_operator

from .conftest import fast_timers, key_text, policy, volumes  # noqa: F401 - fixtures
from .emulated import NS, api, clock, cluster, emulator, runner, seed_pvc, wait_event  # noqa: F401 - fixtures

POLICY = BY_KIND["BackupPolicy"].resource
POINTS = kmock.resource(BY_KIND["RecoveryPoint"].resource)
SNAPS = kmock.resource("snapshot.storage.k8s.io/v1/volumesnapshots")
CLAIMS = kmock.resource("v1/persistentvolumeclaims")
JOBS = kmock.resource("batch/v1/jobs")


def stored(emulator, name="lis"):
    return emulator.stored(POLICY, NS, name)


def cond(obj, type_):
    return conditions.find(((obj or {}).get("status") or {}).get("conditions"), type_) or {}


def all_of(emulator, res):
    return [o for (r, _, _), o in emulator._objects_of() if r == res]


def snap_policy(name="lis", cls="csi-snap", hooks=None, keep=0, **extra):
    body = policy(name, claim="lis-data", **extra)
    body["spec"]["source"] = {"volumeSnapshot": {"claimName": "lis-data", "volumeSnapshotClassName": cls,
                                                 "keepSnapshots": keep, "readyTimeout": "10m"}}
    if hooks:
        body["spec"]["hooks"] = hooks
    return body


@pytest.fixture
def lis(cluster, volumes):
    """The LIS volume (a PVC and its local directory) and a VolumeSnapshotClass for its driver."""
    seed_pvc(cluster, "lis-data")
    data = volumes["lis-data"] = volumes["pacs-data"].parent / "lis-data"
    (data / "results").mkdir(parents=True)
    (data / "results" / "run-1.hl7").write_bytes(b"MSH|^~\\&|LIS|" + bytes(range(256)) * 64)
    (data / "index.db").write_bytes(b"SQLite format 3\x00" + b"\x01" * 5000)
    cluster.seed("snapshot.storage.k8s.io/v1/volumesnapshotclasses",
                 {"metadata": {"name": "csi-snap"}, "driver": "lifeline.devstack.csi", "deletionPolicy": "Delete"})
    return data


@pytest.fixture
async def snapshotter(kube_url, runner, tmp_path, clock, lis):
    runner.volumes["lis-data"] = lis
    async with FakeSnapshotter(kube_url, volumes=runner.volumes, workdir=tmp_path / "csi", clock=clock) as s:
        yield s


@pytest.fixture
def audited():
    records = []
    audit.add_sink(records.append)
    yield records
    audit.remove_sink(records.append)


async def settled(emulator, name="lis"):
    return await emulator.wait_for(
        lambda: (o := stored(emulator, name)) and (o.get("status") or {}).get("observedGeneration") ==
        o["metadata"]["generation"] and o, timeout=20)


def restore(copy: dict, key_text: str, tmp_path, target):
    key = tmp_path / "restore.key"
    key.write_text(key_text)
    key.chmod(0o600)
    subprocess.run([sys.executable, "-m", "lifeline.agent", "restore", copy["snapshotId"], "--to", str(target),
                    "--repo", copy["repository"], "--key", f"file://{key}"], capture_output=True, check=True,
                   timeout=120)


def same_tree(a, b) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(a / d, b / d) for d in cmp.common_dirs)


async def test_a_snapshot_backup_moves_the_data_of_the_cut_and_cleans_up(
        emulator, kubeconfig, api, runner, snapshotter, lis, clock, key_text, tmp_path, audited):
    frozen = tmp_path / "at-the-cut"
    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        await api.create(snap_policy())
        obj = await settled(emulator)
        assert obj["status"]["cronJobs"] == ["lis-full", "lis-incremental", "lis-prune"]
        source = cond(obj, "SourceAvailable")
        assert (source["status"], source["reason"]) == ("True", "PVCFound"), source

        trigger = await runner.trigger(NS, "lis-full")
        assert trigger.phase == "Succeeded" and list(trigger.containers) == ["trigger"]
        mover_name = f"{trigger.job}-mover"
        mover = await emulator.wait_for(lambda: emulator.stored(JOBS, NS, mover_name), timeout=20)
        snap = emulator.stored(SNAPS, NS, trigger.job)
        assert snap["status"]["readyToUse"] and snap["spec"]["volumeSnapshotClassName"] == "csi-snap"
        claim = emulator.stored(CLAIMS, NS, f"{trigger.job}-data")
        assert claim["spec"]["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                               "name": trigger.job}
        volume = next(v for v in mover["spec"]["template"]["spec"]["volumes"] if v["name"] == "source")
        assert volume["persistentVolumeClaim"] == {"claimName": f"{trigger.job}-data", "readOnly": True}
        assert stored(emulator)["status"]["lastBackup"]["outcome"] == "Running"

        # the live volume changes after the cut: the backup holds the data of the cut
        import shutil
        shutil.copytree(lis, frozen)
        (lis / "index.db").write_bytes(b"changed after the snapshot")
        await emulator.wait_for(lambda: (emulator.stored(CLAIMS, NS, f"{trigger.job}-data") or {})
                                .get("status", {}).get("phase") == "Bound", timeout=20)
        [moved] = await runner.run_pending(NS)
        assert moved.job == mover_name and moved.phase == "Succeeded", moved.containers["agent"].log.read_text()

        obj = await emulator.wait_for(lambda: (o := stored(emulator)) and o["status"].get("recoveryPoints") == 1
                                      and (o["status"].get("lastBackup") or {}).get("outcome") == "Succeeded"
                                      and o, timeout=20)
        assert obj["status"]["lastBackup"]["job"] == mover_name
        await emulator.wait_for(lambda: not emulator.stored(CLAIMS, NS, f"{trigger.job}-data")
                                and not emulator.stored(SNAPS, NS, trigger.job), timeout=20)
        recorded = await emulator.wait_for(lambda: (j := emulator.stored(JOBS, NS, trigger.job)) and
                                           j["metadata"]["annotations"].get("dr.lifeline.io/recorded") and j)
        assert recorded["metadata"]["annotations"]["dr.lifeline.io/recorded"] == "Succeeded"
        await wait_event(emulator, "lis", "SnapshotReady")
        assert metric(ctx, "lifeline_backup_condition", namespace=NS, name="lis", type="SourceAvailable") == 1
        assert metric(ctx, "lifeline_backup_condition", namespace=NS, name="lis", type="OffSiteCopy") == 1

    [rp] = all_of(emulator, POINTS)
    assert rp["spec"]["type"] == "full" and rp["metadata"]["annotations"]["dr.lifeline.io/job"] == mover_name
    restored = tmp_path / "restored"
    restore(rp["spec"]["copies"][1], key_text, tmp_path, restored)
    assert same_tree(frozen, restored), "the point holds the snapshot's bytes"
    assert not same_tree(lis, restored)
    backups = [r for r in audited if r["action"] == "backup"]
    assert [(r["outcome"], r["details"]["recoveryPoint"]) for r in backups] == [("succeeded", rp["metadata"]["name"])]


async def test_snapshots_beyond_keep_snapshots_are_pruned_and_the_newest_stay(
        emulator, kubeconfig, api, runner, snapshotter, clock):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(snap_policy(keep=1))
        await settled(emulator)
        names = []
        for _ in range(2):
            trigger = await runner.trigger(NS, "lis-incremental")
            names.append(trigger.job)
            await emulator.wait_for(lambda: emulator.stored(JOBS, NS, f"{trigger.job}-mover"), timeout=20)
            await emulator.wait_for(lambda: (emulator.stored(CLAIMS, NS, f"{trigger.job}-data") or {})
                                    .get("status", {}).get("phase") == "Bound", timeout=20)
            [moved] = await runner.run_pending(NS)
            assert moved.phase == "Succeeded", moved.containers["agent"].log.read_text()
            await emulator.wait_for(lambda: (emulator.stored(JOBS, NS, trigger.job) or {})["metadata"]
                                    .get("annotations", {}).get("dr.lifeline.io/recorded"), timeout=20)
            clock.advance(3600)
        await emulator.wait_for(lambda: [s["metadata"]["name"] for s in all_of(emulator, SNAPS)] == names[1:],
                                timeout=20)
        await emulator.wait_for(lambda: not [c for c in all_of(emulator, CLAIMS) if "dr.lifeline.io/trigger-job" in
                                             (c["metadata"].get("annotations") or {})], timeout=20)


@pytest.mark.parametrize("case", ["class-missing", "driver-error", "timeout"])
async def test_a_snapshot_that_cannot_be_taken_fails_the_backup_with_a_reason(
        emulator, kubeconfig, api, runner, snapshotter, clock, case, audited):
    reasons = {"class-missing": "VolumeSnapshotClassNotFound", "driver-error": "SnapshotFailed",
               "timeout": "SnapshotTimeout"}
    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        await api.create(snap_policy(cls="no-such-class" if case == "class-missing" else "csi-snap"))
        obj = await settled(emulator)
        if case == "class-missing":
            src = await emulator.wait_for(lambda: (c := cond(stored(emulator), "SourceAvailable")) and
                                          c["status"] == "False" and c, timeout=20)
            assert src["reason"] == "VolumeSnapshotClassNotFound" and "no-such-class" in src["message"]
        if case == "driver-error":
            snapshotter.fail_next("rbd: image lis-data: quota exceeded")
        if case == "timeout":
            snapshotter.hold()
        trigger = await runner.trigger(NS, "lis-full")
        if case == "timeout":
            await emulator.wait_for(lambda: (emulator.stored(SNAPS, NS, trigger.job) or {})
                                    .get("status", {}).get("creationTime"), timeout=20)
            clock.advance(601)  # readyTimeout 10m
        obj = await emulator.wait_for(lambda: (o := stored(emulator)) and
                                      (o["status"].get("lastBackup") or {}).get("outcome") == "Failed" and o,
                                      timeout=20)
        assert obj["status"]["lastBackup"]["job"] == trigger.job
        src = await emulator.wait_for(lambda: (c := cond(stored(emulator), "SourceAvailable")) and
                                      c["reason"] == reasons[case] and c, timeout=20)
        assert src["status"] == "False"
        if case == "driver-error":
            assert "quota exceeded" in src["message"]
        await wait_event(emulator, "lis", reasons[case])
        assert emulator.stored(SNAPS, NS, trigger.job) is None, "a failed snapshot is not left behind"
        assert emulator.stored(JOBS, NS, f"{trigger.job}-mover") is None
        assert metric(ctx, "lifeline_backup_failures_total", namespace=NS, policy="lis", tier="B", destination="",
                      reason=reasons[case]) == 1
        assert metric(ctx, "lifeline_backup_condition", namespace=NS, name="lis", type="SourceAvailable") == 0
    assert [(r["outcome"], r["details"]["reason"]) for r in audited if r["action"] == "backup"] == [
        ("failed", reasons[case])]


async def test_snapshotting_a_missing_pvc_fails_in_the_snapshotter(emulator, snapshotter):
    emulator.seed(SNAPS, {"metadata": {"name": "orphan", "namespace": NS},
                          "spec": {"source": {"persistentVolumeClaimName": "gone"},
                                   "volumeSnapshotClassName": "csi-snap"}})
    snap = await emulator.wait_for(lambda: (s := emulator.stored(SNAPS, NS, "orphan")) and s.get("status") and s)
    assert snap["status"]["readyToUse"] is False
    assert 'persistentvolumeclaim \\"gone\\" not found' in snap["status"]["error"]["message"]
    assert snapshotter.cut == []


# ---- hooks -------------------------------------------------------------------------------------


def workload(emulator):
    emulator.seed("v1/pods", {"metadata": {"name": "lis-db-0", "namespace": NS, "labels": {"app": "lis-db"}},
                              "spec": {"containers": [{"name": "sidecar", "image": "x"}, {"name": "db", "image": "y"}]},
                              "status": {"phase": "Running"}})


HOOKS = {"pre": [{"name": "freeze", "podSelector": {"app": "lis-db"}, "container": "db",
                  "command": ["fsfreeze", "--freeze", "/var/lib/lis"], "timeout": "30s"}],
         "post": [{"name": "thaw", "podSelector": {"app": "lis-db"}, "container": "db",
                   "command": ["fsfreeze", "--unfreeze", "/var/lib/lis"], "timeout": "30s"}]}


async def test_hooks_freeze_before_the_cut_and_thaw_after_it(emulator, kubeconfig, api, runner, snapshotter, clock):
    ran = []

    def handler(req):
        snaps = all_of(emulator, SNAPS)
        ran.append((req.pod, req.container, req.command[1], [bool((s.get("status") or {}).get("creationTime"))
                                                             for s in snaps]))
        return 0, "", ""

    emulator.exec_handler = handler
    workload(emulator)
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(snap_policy(hooks=HOOKS))
        obj = await settled(emulator)
        assert "1 pre- and 1 post-hook(s)" in cond(obj, "SourceAvailable")["message"]
        trigger = await runner.trigger(NS, "lis-full")
        await emulator.wait_for(lambda: emulator.stored(JOBS, NS, f"{trigger.job}-mover"), timeout=20)
        assert ran == [("lis-db-0", "db", "--freeze", []), ("lis-db-0", "db", "--unfreeze", [True])], \
            "frozen before any snapshot existed, thawed once it was cut"
        await wait_event(emulator, "lis", "HookSucceeded")
        job = emulator.stored(JOBS, NS, trigger.job)
        assert job["metadata"]["annotations"]["dr.lifeline.io/hooks"] == "post"


async def test_a_failing_pre_hook_aborts_the_backup_and_the_post_hook_still_runs(
        emulator, kubeconfig, api, runner, snapshotter, clock):
    ran = []

    def handler(req):
        ran.append(req.command[1])
        return (1, "", "fsfreeze: /var/lib/lis: Operation not permitted\n") if req.command[1] == "--freeze" \
            else (0, "", "")

    emulator.exec_handler = handler
    workload(emulator)
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(snap_policy(hooks=HOOKS))
        await settled(emulator)
        trigger = await runner.trigger(NS, "lis-full")
        obj = await emulator.wait_for(lambda: (o := stored(emulator)) and
                                      (o["status"].get("lastBackup") or {}).get("outcome") == "Failed" and o,
                                      timeout=20)
        assert ran == ["--freeze", "--unfreeze"]
        message = obj["status"]["lastBackup"]["message"]
        assert "pre-hook freeze" in message and "exited 1" in message and "Operation not permitted" in message
        [event] = await wait_event(emulator, "lis", "PreHookFailed")
        assert event["type"] == "Warning"
        assert all_of(emulator, SNAPS) == [], "no snapshot after a failed pre-hook"
        assert emulator.stored(JOBS, NS, f"{trigger.job}-mover") is None
