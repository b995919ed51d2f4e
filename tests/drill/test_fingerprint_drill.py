"""spec.fingerprint end to end with a real PostgreSQL: the backup Job's fingerprint container runs
`psql -tAc 'select count(*) from patients'` against the dumped database, the agent carries the
count in its termination summary, the operator records it as the RecoveryPoint's `verifyOutput`
tag, and a drill with `compareToBackup: true` compares the restored database's count with it.

Stand-ins as in test_dump_drill.py: the throwaway database is a fresh database of the test's
server, reached through the job runner's environment."""
from __future__ import annotations

import uuid

from lifeline.devstack.job_runner import JobRunner
from tests.backup.conftest import points
from tests.integration.operator_harness import running_operator

from .conftest import NS, seed_pvc, seed_secret, wait_event

from .test_drill_e2e import last_run
from .test_dump_drill import ROWS, dump_drill, dump_policy, kube_url


def fingerprint_policy(db: str, server) -> dict:
    body = dump_policy(db, server)
    # no PG* variables of its own: it inherits the dump's, so it counts in the same database
    body["spec"]["fingerprint"] = {"image": "postgres:16",
                                   "command": ["psql", "-tAc", "select count(*) from patients", db]}
    return body


def comparing_drill() -> dict:
    body = dump_drill("unused")
    cmd = body["spec"]["verify"]["command"]
    del cmd["expectOutput"]
    cmd["compareToBackup"] = True
    return body


async def backup_then_drill(emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres,
                            recorded: str | None = None) -> tuple[dict, dict]:
    """Back up, optionally overwrite the point's recorded value, drill; (point, the drill's run)."""
    source = postgres.createdb(f"his_{uuid.uuid4().hex[:8]}")
    postgres.psql(source, "CREATE TABLE patients (id int primary key, name text);"
                          f"INSERT INTO patients SELECT g, 'patient ' || g FROM generate_series(1, {ROWS}) g;")
    throwaway = postgres.createdb(f"drill_{uuid.uuid4().hex[:8]}")
    seed_pvc(emulator, "backup-local")
    seed_secret(emulator, "pacs-key", {"key": key_text})
    env = {"LIFELINE_DB_HOST": postgres.host, "LIFELINE_DB_PORT": str(postgres.port), "PGDATABASE": throwaway}
    async with JobRunner(kube_url(kubeconfig), workdir=tmp_path / "pods", volumes=volumes, clock=clock,
                         extra_path=[str(postgres.bin_dir)], env=env) as runner:
        async with running_operator(kubeconfig, emulator, clock=clock):
            await api.create(fingerprint_policy(source, postgres))
            await emulator.wait_for(lambda: emulator.stored("batch/v1/cronjobs", NS, "his-full"), timeout=20)
            result = await runner.trigger(NS, "his-full")
            assert [*result.containers] == ["prepare", "dump", "agent", "fingerprint"]
            assert result.phase == "Succeeded", {n: c.log.read_text()[-1500:] for n, c in result.containers.items()}
            [point] = await emulator.wait_for(lambda: points(emulator, "his"), timeout=20)
            name = point["metadata"]["name"]
            if recorded is not None:
                await api.patch("RecoveryPoint", name, {"spec": {"tags": {"verifyOutput": recorded}}})
            await api.create(comparing_drill())
            run = await emulator.wait_for(lambda: last_run(emulator, "his-drill").get("sandbox") and
                                          last_run(emulator, "his-drill"), timeout=20)
            [restore] = await runner.run_pending(run["sandbox"])
            assert restore.phase == "Succeeded", {n: c.log.read_text()[-1500:] for n, c in restore.containers.items()}
            await emulator.wait_for(lambda: last_run(emulator, "his-drill").get("phase") == "Verifying", timeout=20)
            [_verify] = await runner.run_pending(run["sandbox"])
            final = await emulator.wait_for(lambda: (r := last_run(emulator, "his-drill")).get("outcome")
                                            not in (None, "Running") and r, timeout=20)
            await wait_event(emulator, "his-drill", "DrillSucceeded" if final["outcome"] == "Succeeded"
                             else "DrillFailed")
    return point, final


async def test_the_backup_records_the_fingerprint_and_the_drill_compares_equal(
        emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres):
    point, run = await backup_then_drill(emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres)
    assert point["spec"]["tags"]["verifyOutput"] == str(ROWS)
    assert (run["outcome"], run["reason"]) == ("Succeeded", "Verified"), run
    assert run["verifyOutput"] == str(ROWS)


async def test_a_drill_whose_count_differs_from_the_recorded_one_fails_naming_both(
        emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres):
    point, run = await backup_then_drill(emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres,
                                         recorded="138")
    assert point["spec"]["tags"]["verifyOutput"] == str(ROWS)  # what the backup recorded before the tampering
    assert (run["outcome"], run["reason"]) == ("Failed", "UnexpectedOutput"), run
    assert f"'{ROWS}'" in run["message"] and "'138'" in run["message"], run["message"]
