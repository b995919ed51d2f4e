"""Immutable BackupPolicy destinations (issue 18, docs/immutability.md "In a BackupPolicy"), as the Jobs
run them against MinIO (which enforces Object Lock): the backup Job's first ``init`` creates the
repository immutable; a backup to an existing repository that is less immutable than the plan asks
fails saying why; the shred Job seals its tombstone with the key; the agent's bandwidth limits hold
on an immutable repository's write-once view.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest

from lifeline.agent import jobs
from lifeline.keys import shred_job
from lifeline.messages import (BackupPlan, BandwidthPlan, DestinationPlan, ImmutablePlan, KeyPlan, ShredCopyPlan,
                               ShredPlan, SourcePlan)

from .helpers import Repo, make_key, write_random

pytestmark = pytest.mark.slow

PREFIX = "LIFELINE_S3_0_"


def _dest(minio, bucket: str, prefix: str, immutable: ImmutablePlan | None = None, **more) -> DestinationPlan:
    return DestinationPlan(name="offsite", repository=f"s3://{bucket}/{prefix}", off_site=True,
                           endpoint=minio.endpoint, region=minio.region, credentials_env=PREFIX,
                           immutable=immutable, **more)


def _env(minio) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIFELINE_"))}
    return {**env, PREFIX + "ACCESS_KEY_ID": minio.access_key, PREFIX + "SECRET_ACCESS_KEY": minio.secret_key}


def _backup(dest: DestinationPlan, key: str, src, minio):
    plan = BackupPlan(namespace="hospital", policy="his", key=KeyPlan(ref=key), destinations=[dest], type="full",
                      source=SourcePlan(kind="pvc", path=str(src), name="hospital/his"), tags=["policy=hospital/his"])
    return jobs.run_backup(jobs.Task(plan, key, _env(minio)))


def _config(minio, bucket: str, prefix: str) -> dict:
    return json.loads(minio.client().get_object(Bucket=bucket, Key=f"{prefix}/config")["Body"].read())


def test_the_backup_job_creates_an_immutable_repository_and_refuses_a_weaker_one(minio, tmp_path):
    bucket = minio.make_bucket(f"job-{uuid.uuid4().hex[:12]}")
    key = make_key(tmp_path / "key")
    src = tmp_path / "src"
    src.mkdir()
    write_random(src / "f", 200_000)

    # the first backup's init makes it immutable, as the plan says
    rc, summary = _backup(_dest(minio, bucket, "his", ImmutablePlan(mode="compliance", days=3)), key, src, minio)
    assert rc == 0 and len(summary.copies) == 1, summary
    assert _config(minio, bucket, "his")["immutable"] == {"mode": "compliance", "days": 3}
    # the next one finds it as asked (or more: fewer days, governance asked of a compliance repository)
    rc, summary = _backup(_dest(minio, bucket, "his", ImmutablePlan(mode="governance", days=2)), key, src, minio)
    assert rc == 0 and summary.copies and not summary.failures, summary

    # asked for more days than it locks for: refused, nothing stored
    rc, summary = _backup(_dest(minio, bucket, "his", ImmutablePlan(mode="compliance", days=30)), key, src, minio)
    assert rc == 1 and not summary.copies
    error = summary.failures[0].error
    assert "is immutable for fewer days (compliance mode, 3 days)" in error and "asks for compliance mode, 30 days" \
        in error, error

    # governance where compliance is asked: refused
    Repo(f"s3://{bucket}/gov", key, env=minio.env()).ok("init", "--immutable-days", "30", "--immutable-mode",
                                                         "governance")
    rc, summary = _backup(_dest(minio, bucket, "gov", ImmutablePlan(mode="compliance", days=30)), key, src, minio)
    assert rc == 1 and "is immutable in governance mode" in summary.failures[0].error

    # a mutable repository where an immutable one is asked: refused, saying what to do
    Repo(f"s3://{bucket}/plain", key, env=minio.env()).ok("init")
    rc, summary = _backup(_dest(minio, bucket, "plain", ImmutablePlan(mode="compliance", days=3)), key, src, minio)
    assert rc == 1 and not summary.copies
    error = summary.failures[0].error
    assert error.startswith("the repository is mutable, and the policy asks for compliance mode, 3 days") \
        and "new prefix" in error, error
    # and a plan that asks nothing backs up to it as before
    rc, summary = _backup(_dest(minio, bucket, "plain"), key, src, minio)
    assert rc == 0 and summary.copies


def test_the_shred_job_seals_its_tombstone_with_the_key_on_an_immutable_destination(minio, tmp_path, monkeypatch):
    bucket = minio.make_bucket(f"shred-{uuid.uuid4().hex[:12]}")
    (tmp_path / "job").mkdir()
    key = make_key(tmp_path / "job" / "key")  # the backup Job's copy of the key, gone with the Job
    key_file = tmp_path / "secret-key"
    shutil.copy(tmp_path / "job" / "key", key_file)
    src = tmp_path / "src"
    src.mkdir()
    write_random(src / "f", 50_000)
    dest = _dest(minio, bucket, "his", ImmutablePlan(mode="compliance", days=3))
    rc, summary = _backup(dest, key, src, minio)
    assert rc == 0
    point = summary.copies[0].snapshot_id
    shutil.rmtree(tmp_path / "job")
    for k, v in _env(minio).items():
        if k.startswith(PREFIX):
            monkeypatch.setenv(k, v)

    def plan(file: str) -> ShredPlan:
        # as the operator renders it: the policy's key reference, its Secret's mounted file
        return ShredPlan(namespace="hospital", policy="his", recovery_point="his-full", actor="system:serviceaccount:x",
                         reason="test", copies=[ShredCopyPlan(destination="offsite", snapshot_id=point)],
                         destinations=[dest], key=KeyPlan(ref="secret://his-key/key", file=file))

    # the key's Secret is gone: the shred says it needs the key (exit 4), and nothing is shredded
    rc, out = shred_job.run(plan(str(tmp_path / "missing")))
    assert rc == 1 and out.failures[0].exit_code == 4 and "--key" in out.failures[0].error, out
    os.chmod(key_file, 0o444)  # as a Secret is mounted: the Job copies it to a 0600 file first
    rc, out = shred_job.run(plan(str(key_file)))
    assert rc == 0 and out.shredded[0].points == [point], out
    os.chmod(key_file, 0o600)
    r = Repo(f"s3://{bucket}/his", f"file://{key_file}", env=minio.env())
    gone = r.run("restore", point, "--to", "-")
    assert gone.rc == 3 and "crypto-shredded" in gone.err, gone.err


def test_bandwidth_limits_hold_on_an_immutable_repository(minio, tmp_path):
    """The write-once view an immutable repository is read and written through draws on the same buckets."""
    bucket = minio.make_bucket(f"bw-{uuid.uuid4().hex[:12]}")
    r = Repo(f"s3://{bucket}/r", make_key(tmp_path / "key"), env=minio.env())
    r.ok("init", "--immutable-days", "3", "--limit-upload", "64MiB")
    src = tmp_path / "src"
    src.mkdir()
    write_random(src / "f", 300_000)
    out = r.backup(str(src), "--limit-upload", "64MiB", "--limit-download", "64MiB")
    assert out["bandwidth"]["upload"]["bytes"] >= 300_000, out["bandwidth"]
    assert out["bandwidth"]["download"]["bytes"] > 0  # the config's first version, the head, ...
    # the Job hands its destination's limits to the agent it runs
    dest = _dest(minio, bucket, "r", bandwidth=BandwidthPlan(upload="64MiB", download="1GiB"))
    assert jobs.limit_args(dest) == ["--limit-upload", "64MiB", "--limit-download", "1GiB"]
    assert jobs.limits_of(dest).upload == 64 << 20
    backend = jobs.open_destination(dest, {"AWS_ENDPOINT_URL": minio.endpoint, "AWS_REGION": minio.region,
                                           "AWS_ACCESS_KEY_ID": minio.access_key,
                                           "AWS_SECRET_ACCESS_KEY": minio.secret_key})
    from lifeline.repository.repo import Repository
    from lifeline.repository.throttle import report

    repo = Repository.open(backend)
    assert repo.immutability is not None and report(repo.backend)["download"]["bytes"] > 0
