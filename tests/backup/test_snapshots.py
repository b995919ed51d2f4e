"""volumeSnapshot sources end to end on the real control plane: a CronJob's trigger Job → the
operator's VolumeSnapshot, bound and tracked by the real snapshot-controller and cut by the stand-in
CSI driver (:class:`~lifeline.devstack.snapshotter.HostPathCSI`) → a PVC made from it → the
data-mover Job running the real agent → a RecoveryPoint whose data equals the source at the moment of
the cut → the temporary objects removed through the real finalizers. Plus the failure paths (missing
class, driver error, timeout) and hooks run through pods/exec (order, failure)."""
from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys

import pytest

from lifeline.clock import parse_time
from lifeline.devstack.snapshotter import HostPathCSI
from lifeline.observability import audit
from tests.integration.operator_harness import metric

from .conftest import cond, points, policy, settled, stored, wait_event

SNAPS = "volumesnapshots"
CONTENTS = "volumesnapshotcontents"
CLAIMS = "persistentvolumeclaims"


def snap_policy(name="lis", cls="csi-snap", hooks=None, keep=0, **extra):
    body = policy(name, claim="lis-data", **extra)
    body["spec"]["source"] = {"volumeSnapshot": {"claimName": "lis-data", "volumeSnapshotClassName": cls,
                                                 "keepSnapshots": keep, "readyTimeout": "10m"}}
    if hooks:
        body["spec"]["hooks"] = hooks
    return body


@pytest.fixture
def lis(seeded, volumes):
    """The LIS volume (a claim of the CSI driver, so it can be snapshotted), a VolumeSnapshotClass."""
    data = volumes["lis-data"] = volumes["pacs-data"].parent / "lis-data"
    (data / "results").mkdir(parents=True)
    (data / "results" / "run-1.hl7").write_bytes(b"MSH|^~\\&|LIS|" + bytes(range(256)) * 64)
    (data / "index.db").write_bytes(b"SQLite format 3\x00" + b"\x01" * 5000)
    seeded.claim("lis-data", data, csi=True)
    if seeded.stored("volumesnapshotclasses", None, "csi-snap") is None:  # cluster-scoped: once a session
        seeded.seed("volumesnapshotclasses", {"apiVersion": "snapshot.storage.k8s.io/v1",
                                              "kind": "VolumeSnapshotClass", "metadata": {"name": "csi-snap"},
                                              "driver": "hostpath.csi.lifeline.dev", "deletionPolicy": "Delete"})
    return data


@pytest.fixture
async def csi(kube, lis):
    async with HostPathCSI(kube.cluster.kubeconfig, kube.workdir / "csi") as driver:
        yield driver


@pytest.fixture
def audited():
    records = []
    audit.add_sink(records.append)
    yield records
    audit.remove_sink(records.append)


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


def snapshot(kube, name: str) -> dict:
    return kube.stored(SNAPS, None, name) or {}


async def trigger(kube, cronjob: str = "lis-full") -> str:
    run = await kube.run_cronjob(cronjob)
    assert run.phase == "Succeeded", kube.job_log(run.job, "trigger")
    return run.job


def leftovers(kube, job: str) -> list[dict]:
    """The snapshot, its content, the claim made from it and that claim's volume, while any is left."""
    ref = lambda c: (c["spec"]["volumeSnapshotRef"].get("namespace"), c["spec"]["volumeSnapshotRef"].get("name"))
    return [o for o in (kube.stored(CLAIMS, None, f"{job}-data"), kube.stored(SNAPS, None, job)) if o] + \
        [c for c in kube.objects(CONTENTS, None) if ref(c) == (kube.namespace, job)] + \
        [v for v in kube.objects("persistentvolumes", None)
         if (v["spec"].get("claimRef") or {}).get("name") == f"{job}-data"
         and (v["spec"].get("claimRef") or {}).get("namespace") == kube.namespace]


async def recorded(kube, job: str) -> str:
    """The backup's outcome once the operator recorded it on the trigger Job (the end of the pipeline;
    the mover Job is gone by then)."""
    ann = lambda: ((kube.stored("jobs", None, job) or {}).get("metadata") or {}).get("annotations") or {}
    return await kube.wait_for(lambda: ann().get("dr.lifeline.io/recorded"), timeout=60)


def last_backup(kube, name: str = "lis") -> dict:
    return (stored(kube, name) or {}).get("status", {}).get("lastBackup") or {}


async def gone(kube, job: str) -> None:
    """Everything the snapshot brought is removed."""
    try:
        await kube.wait_for(lambda: not leftovers(kube, job), timeout=30)
    except TimeoutError:
        raise AssertionError(f"left behind: {leftovers(kube, job)}") from None


async def test_a_snapshot_backup_moves_the_data_of_the_cut_and_cleans_up(
        kube, csi, lis, clock, key_text, tmp_path, audited):
    frozen = tmp_path / "at-the-cut"
    csi.hold()  # cut, not ready: the live volume changes in between, before anything reads the copy
    async with kube.operator(clock=clock) as ctx:
        kube.create(snap_policy())
        obj = await settled(kube, "lis")
        assert obj["status"]["cronJobs"] == ["lis-full", "lis-incremental", "lis-prune", "lis-maintenance"]
        source = cond(obj, "SourceAvailable")
        assert (source["status"], source["reason"]) == ("True", "PVCFound"), source

        job = await trigger(kube)
        snap = await kube.wait_for(lambda: (s := snapshot(kube, job)) and s.get("status", {}).get("creationTime")
                                   and s, timeout=30)
        assert snap["spec"]["volumeSnapshotClassName"] == "csi-snap" and not snap["status"]["readyToUse"]
        assert csi.cut == [str(lis)]
        content = kube.stored(CONTENTS, None, snap["status"]["boundVolumeSnapshotContentName"])
        assert content["spec"]["source"]["volumeHandle"] == str(lis), "the real controller read the claim's volume"
        assert stored(kube, "lis")["status"]["lastBackup"]["outcome"] == "Running"

        # the live volume changes after the cut: the backup holds the data of the cut
        shutil.copytree(lis, frozen)
        (lis / "index.db").write_bytes(b"changed after the snapshot")
        csi.release()
        mover_name = f"{job}-mover"
        assert await recorded(kube, job) == "Succeeded", last_backup(kube)
        obj = await kube.wait_for(lambda: (o := stored(kube, "lis")) and o["status"].get("recoveryPoints") == 1
                                  and (o["status"].get("lastBackup") or {}).get("outcome") == "Succeeded"
                                  and o, timeout=30)
        assert obj["status"]["lastBackup"]["job"] == mover_name
        await gone(kube, job)
        assert kube.stored("jobs", None, mover_name) is None, "the mover went, so that its claim could"
        await wait_event(kube, "lis", "SnapshotReady")
        ns = kube.namespace
        assert metric(ctx, "lifeline_backup_condition", namespace=ns, name="lis", type="SourceAvailable") == 1
        assert metric(ctx, "lifeline_backup_condition", namespace=ns, name="lis", type="OffSiteCopy") == 1

    assert not list((kube.workdir / "csi" / "snapshots").iterdir()), "the driver's copy went with the content"
    [rp] = points(kube, "lis")
    assert rp["spec"]["type"] == "full" and rp["metadata"]["annotations"]["dr.lifeline.io/job"] == mover_name
    restored = tmp_path / "restored"
    restore(rp["spec"]["copies"][1], key_text, tmp_path, restored)
    assert same_tree(frozen, restored), "the point holds the snapshot's bytes"
    assert not same_tree(lis, restored)
    backups = [r for r in audited if r["action"] == "backup"]
    assert [(r["outcome"], r["details"]["recoveryPoint"]) for r in backups] == [("succeeded", rp["metadata"]["name"])]


async def test_snapshots_beyond_keep_snapshots_are_pruned_and_the_newest_stay(kube, csi, clock):
    async with kube.operator(clock=clock):
        kube.create(snap_policy(keep=1))
        await settled(kube, "lis")
        names = []
        for _ in range(2):
            job = await trigger(kube, "lis-incremental")
            names.append(job)
            assert await recorded(kube, job) == "Succeeded", last_backup(kube)
        await kube.wait_for(lambda: [s["metadata"]["name"] for s in kube.objects(SNAPS)] == names[1:], timeout=30)
        await kube.wait_for(lambda: not [c for c in kube.objects(CLAIMS) if "dr.lifeline.io/trigger-job" in
                                         (c["metadata"].get("annotations") or {})], timeout=30)
        kept = snapshot(kube, names[1])
        assert kept["status"]["readyToUse"], "the newest snapshot stays, ready to restore from"


@pytest.mark.parametrize("case", ["class-missing", "driver-error", "timeout"])
async def test_a_snapshot_that_cannot_be_taken_fails_the_backup_with_a_reason(kube, csi, lis, clock, case,
                                                                              audited):
    reasons = {"class-missing": "VolumeSnapshotClassNotFound", "driver-error": "SnapshotFailed",
               "timeout": "SnapshotTimeout"}
    async with kube.operator(clock=clock) as ctx:
        kube.create(snap_policy(cls="no-such-class" if case == "class-missing" else "csi-snap"))
        await settled(kube, "lis")
        if case == "class-missing":
            src = await kube.wait_for(lambda: (c := cond(stored(kube, "lis"), "SourceAvailable")) and
                                      c["status"] == "False" and c, timeout=20)
            assert src["reason"] == "VolumeSnapshotClassNotFound" and "no-such-class" in src["message"]
        if case == "driver-error":
            csi.fail("rbd: image lis-data: quota exceeded")
        if case == "timeout":
            csi.hold()
        job = await trigger(kube)
        if case == "timeout":
            await kube.wait_for(lambda: snapshot(kube, job).get("status", {}).get("creationTime"), timeout=30)
            ended = parse_time(kube.stored("jobs", None, job)["status"]["completionTime"])
            clock.advance((ended - clock.now()).total_seconds() + 601)  # readyTimeout 10m from the trigger's end
        obj = await kube.wait_for(lambda: (o := stored(kube, "lis")) and
                                  (o["status"].get("lastBackup") or {}).get("outcome") == "Failed" and o,
                                  timeout=30)
        assert obj["status"]["lastBackup"]["job"] == job
        src = await kube.wait_for(lambda: (c := cond(stored(kube, "lis"), "SourceAvailable")) and
                                  c["reason"] == reasons[case] and c, timeout=20)
        assert src["status"] == "False"
        if case == "driver-error":
            assert "quota exceeded" in src["message"]
        if case == "class-missing":
            assert "no-such-class" in src["message"]
        await wait_event(kube, "lis", reasons[case])
        await gone(kube, job)  # a failed snapshot is not left behind
        assert kube.stored("jobs", None, f"{job}-mover") is None
        assert metric(ctx, "lifeline_backup_failures_total", namespace=kube.namespace, policy="lis", tier="B",
                      destination="", reason=reasons[case]) == 1
        assert metric(ctx, "lifeline_backup_condition", namespace=kube.namespace, name="lis",
                      type="SourceAvailable") == 0
    assert [(r["outcome"], r["details"]["reason"]) for r in audited if r["action"] == "backup"] == [
        ("failed", reasons[case])]
    assert csi.cut == ([str(lis)] if case == "timeout" else []), "cut only when the driver could"


# ---- hooks: run in the workload's Pod through the real pods/exec ---------------------------------


def workload(kube) -> None:
    """The LIS database: a Pod of two containers with the LIS volume mounted in ``db``."""
    kube.create({"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "lis-db-0", "labels": {"app": "lis-db"}},
                 "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                          "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "lis-data"}}],
                          "containers": [
                              {"name": "sidecar", "image": "busybox:1.36", "command": ["sleep", "300"]},
                              {"name": "db", "image": "busybox:1.36", "command": ["sleep", "300"],
                               "volumeMounts": [{"name": "data", "mountPath": "/var/lib/lis"}]}]}})


def hook(name: str, command: str) -> dict:
    return {"name": name, "podSelector": {"app": "lis-db"}, "container": "db",
            "command": ["sh", "-c", command], "timeout": "30s"}


# The hooks leave their mark in the volume itself: what the snapshot holds shows which ran before the cut.
HOOKS = {"pre": [hook("freeze", "echo frozen > /var/lib/lis/hook-state")],
         "post": [hook("thaw", "echo thawed > /var/lib/lis/hook-state")]}


async def running(kube, pod: str) -> None:
    await kube.wait_for(lambda: ((kube.stored("pods", None, pod) or {}).get("status") or {}).get("phase")
                        == "Running", timeout=30)


async def test_hooks_freeze_before_the_cut_and_thaw_after_it(kube, csi, lis, clock, key_text, tmp_path):
    workload(kube)
    await running(kube, "lis-db-0")
    async with kube.operator(clock=clock):
        kube.create(snap_policy(hooks=HOOKS))
        obj = await settled(kube, "lis")
        assert "1 pre- and 1 post-hook(s)" in cond(obj, "SourceAvailable")["message"]
        job = await trigger(kube)
        assert await recorded(kube, job) == "Succeeded", last_backup(kube)
        await wait_event(kube, "lis", "HookSucceeded")
        assert (lis / "hook-state").read_text() == "thawed\n", "thawed after the cut"
        assert kube.stored("jobs", None, job)["metadata"]["annotations"]["dr.lifeline.io/hooks"] == "post"
        await kube.wait_for(lambda: points(kube, "lis"), timeout=30)
    [rp] = points(kube, "lis")
    restored = tmp_path / "restored"
    restore(rp["spec"]["copies"][1], key_text, tmp_path, restored)
    assert (restored / "hook-state").read_text() == "frozen\n", "frozen when the snapshot was cut"


async def test_a_failing_pre_hook_aborts_the_backup_and_the_post_hook_still_runs(kube, csi, lis, clock):
    hooks = {"pre": [hook("freeze", "echo fsfreeze: /var/lib/lis: Operation not permitted >&2; exit 1")],
             "post": [hook("thaw", "echo thawed > /var/lib/lis/hook-state")]}
    workload(kube)
    await running(kube, "lis-db-0")
    async with kube.operator(clock=clock):
        kube.create(snap_policy(hooks=hooks))
        await settled(kube, "lis")
        job = await trigger(kube)
        obj = await kube.wait_for(lambda: (o := stored(kube, "lis")) and
                                  (o["status"].get("lastBackup") or {}).get("outcome") == "Failed" and o,
                                  timeout=30)
        message = obj["status"]["lastBackup"]["message"]
        assert "pre-hook freeze" in message and "exited 1" in message and "Operation not permitted" in message
        [event] = await wait_event(kube, "lis", "PreHookFailed")
        assert event["type"] == "Warning"
        await kube.wait_for(lambda: (lis / "hook-state").exists(), timeout=30)
        assert (lis / "hook-state").read_text() == "thawed\n", "the post-hook ran after the failed pre-hook"
        assert kube.objects(SNAPS) == [] and csi.cut == [], "no snapshot after a failed pre-hook"
        assert kube.stored("jobs", None, f"{job}-mover") is None
