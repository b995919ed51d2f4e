"""The continuous planner: BackupPolicy with a continuous source -> the shipping Deployment."""
from __future__ import annotations

import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from lifeline.planning import continuous
from lifeline.planning.backup import Facts, PlanError

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = sorted((ROOT / "examples").glob("backuppolicy-*-continuous.yaml"))
FACTS = Facts(agent_image="ghcr.io/lifeline-dr/lifeline:0.1.0",
              vault_env=(("VAULT_ADDR", "https://vault.example:8200"), ("LIFELINE_VAULT_ROLE", "lifeline-backup")))
REGENERATE = os.environ.get("LIFELINE_REGENERATE_GOLDEN") == "1"


def example(path: Path) -> dict:
    body = yaml.safe_load(path.read_text())
    body["metadata"].update(namespace="hospital", uid="00000000-0000-4000-8000-000000000002", generation=1)
    return body


def dump(docs: list[dict]) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False, width=100) for d in docs)


def test_there_is_a_continuous_example():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_renders_exactly_the_golden_deployment(path):
    text = dump(continuous.plan(example(path), FACTS))
    golden = GOLDEN / f"{path.stem}.yaml"
    if REGENERATE or not golden.exists():
        golden.write_text(text)
        if not REGENERATE:
            pytest.fail(f"{golden.name} did not exist: written now, review it and commit it")
    assert text == golden.read_text()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_deployment_is_valid_single_hardened_and_read_only_on_the_source(path):
    [dep] = continuous.plan(example(path), FACTS)
    kubernetes_validate.validate(dep, "1.30", strict=True)
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "BackupPolicy"
    assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
            "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of"} <= set(dep["metadata"]["labels"])
    pod = spec["template"]["spec"]
    assert set(spec["selector"]["matchLabels"].items()) <= set(spec["template"]["metadata"]["labels"].items())
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] and psc["seccompProfile"]["type"] == "RuntimeDefault"
    [c] = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    source = next(v for v in pod["volumes"] if v["name"] == "source")
    assert source["persistentVolumeClaim"]["readOnly"] is True
    assert next(m for m in c["volumeMounts"] if m["name"] == "source")["readOnly"] is True
    args = c["args"]
    assert args[:3] == ["ship", "--dir", "/source/wal-archive"]
    assert args.count("--repo") == 2  # every destination
    assert not any("SECRET" in str(e.get("value", "")) for e in c["env"])


def base_policy(**source) -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy",
            "metadata": {"name": "db", "namespace": "ns", "uid": "u1"},
            "spec": {"tier": "A", "source": source, "schedule": {"full": "0 1 * * *"},
                     "destinations": [{"name": "local", "filesystem": {"claimName": "bk"}}],
                     "encryption": {"keyRef": "secret://db-key/key"}}}


def test_a_secret_key_is_mounted_and_copied_not_passed_in_clear():
    [dep] = continuous.plan(base_policy(continuous={"claimName": "wal"}), FACTS)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][c["args"].index("--key-file") + 1] == "/etc/lifeline/key/key"
    assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_other_sources_get_no_deployment_and_suspend_scales_to_zero():
    assert continuous.plan(base_policy(pvc={"claimName": "data"}), FACTS) == []
    body = base_policy(continuous={"claimName": "wal"})
    body["spec"]["suspend"] = True
    assert continuous.plan(body, FACTS)[0]["spec"]["replicas"] == 0


def test_a_path_out_of_the_volume_is_a_plan_error():
    with pytest.raises(PlanError, match="climbs out"):
        continuous.plan(base_policy(continuous={"claimName": "wal", "path": "../etc"}), FACTS)


def test_vault_ca_bundle_is_mounted_and_named_like_in_backup_jobs():
    body = base_policy(continuous={"claimName": "wal"})
    body["spec"]["encryption"] = {"keyRef": "vault-transit://db?mount=transit", "caBundle": {"configMap": "vault-ca"}}
    [dep] = continuous.plan(body, FACTS)
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert {"name": "VAULT_CACERT", "value": "/etc/lifeline/vault-ca/ca.crt"} in c["env"]
    assert {"name": "vault-ca", "configMap": {"name": "vault-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}} \
        in pod["volumes"]
    kubernetes_validate.validate(dep, "1.30", strict=True)


def test_scheduled_backups_of_a_postgres_source_are_base_backups():
    from lifeline.planning import backup

    pg = {"claimName": "wal", "postgres": {"image": "postgres:15", "args": ["--max-rate=50M"], "env": [
        {"name": "PGHOST", "value": "icu-db"},
        {"name": "PGPASSWORD", "valueFromSecret": {"name": "icu-db-replicator", "key": "password"}}]}}
    full = next(c for c in backup.plan(base_policy(continuous=pg), FACTS) if c["metadata"]["name"].endswith("-full"))
    pod = full["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [init], [agent] = pod["initContainers"], pod["containers"]
    assert init["image"] == "postgres:15" and init["command"][:3] == ["pg_basebackup", "-D", "/basebackup/data"]
    assert init["command"][-1] == "--max-rate=50M" and "--no-password" in init["command"]
    assert {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "icu-db-replicator", "key": "password"}}} \
        in init["env"]
    assert agent["command"] == ["python", "-m", "lifeline.agent.base_backup_job"]
    plan = yaml.safe_load(next(e["value"] for e in agent["env"] if e["name"] == "LIFELINE_JOB_PLAN"))
    assert plan["source"] == {"kind": "continuous", "path": "/basebackup/data", "name": "ns/db", "baseBackup": True}
    assert "source" not in {v["name"] for v in pod["volumes"]}, "the WAL volume is not needed for a base backup"
    # without postgres the schedules copy the segment directory, read-only
    plain = next(c for c in backup.plan(base_policy(continuous={"claimName": "wal"}), FACTS)
                 if c["metadata"]["name"].endswith("-full"))
    pod = plain["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod and pod["containers"][0]["args"] == ["backup"]
