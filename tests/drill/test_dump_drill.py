"""A PostgreSQL dump drill end to end with a real PostgreSQL: pg_dump of a database with rows backed
up through a Job, restored by the drill's restore Job (the agent streams the point into the load
container's pg_restore), verified by `psql -tAc 'select count(*) from patients'` in the verify Job.

What stands in (docs/drills.md): no pod runs the sandbox's ``drill-db`` database; a fresh, empty
database in the test's PostgreSQL server is the throwaway database, and the job runner's
environment points ``$LIFELINE_DB_HOST``/``$LIFELINE_DB_PORT`` (and libpq's PG* variables) at it,
as the ``drill-db`` Service's DNS name would in a cluster."""
from __future__ import annotations

import uuid

from lifeline.devstack.job_runner import JobRunner
from tests.integration.operator_harness import running_operator

from .conftest import NS, policy, seed_pvc, seed_secret, wait_event
from .test_drill_e2e import DRILLS, POLICIES, last_run

ROWS = 137


def dump_policy(db: str, server) -> dict:
    env = [{"name": "PGHOST", "value": server.host}, {"name": "PGPORT", "value": str(server.port)},
           {"name": "PGUSER", "value": server.user}]
    body = policy("his", source={"command": {"image": "postgres:16", "env": env,
                                             "command": ["pg_dump", "--format=custom", "--no-owner", db]}})
    body["spec"]["destinations"] = [{"name": "local", "filesystem": {"claimName": "backup-local", "path": "/his"}}]
    return body


def dump_drill(expected: str) -> dict:
    db = '-h "$LIFELINE_DB_HOST" -p "$LIFELINE_DB_PORT" -U postgres'
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RestoreDrill", "metadata": {"name": "his-drill"},
            "spec": {"policyName": "his", "mode": "Once",
                     "restore": {"database": {"image": "postgres:16", "port": 5432,
                                              "env": [{"name": "POSTGRES_PASSWORD", "value": "drill-only"},
                                                      {"name": "PGPASSWORD", "value": "drill-only"}]},
                                 "load": {"image": "postgres:16",
                                          "command": ["sh", "-c", f"pg_restore --no-owner --exit-on-error {db} -d "
                                                                  '"$PGDATABASE"'],
                                          "env": [{"name": "PGPASSWORD", "value": "drill-only"}]}},
                     "verify": {"command": {"image": "postgres:16",
                                            "command": ["sh", "-c", f"psql {db} -tAc 'select count(*) from patients'"],
                                            "expectOutput": expected}}}}


async def drill_once(emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres, expected: str) -> dict:
    source = postgres.createdb(f"his_{uuid.uuid4().hex[:8]}")
    postgres.psql(source, "CREATE TABLE patients (id int primary key, name text);"
                          f"INSERT INTO patients SELECT g, 'patient ' || g FROM generate_series(1, {ROWS}) g;")
    throwaway = postgres.createdb(f"drill_{uuid.uuid4().hex[:8]}")  # empty, as a fresh drill-db pod would be
    seed_pvc(emulator, "backup-local")
    seed_secret(emulator, "pacs-key", {"key": key_text})
    # the drill-db Service's DNS name, resolved here: the test's server, the throwaway database
    env = {"LIFELINE_DB_HOST": postgres.host, "LIFELINE_DB_PORT": str(postgres.port), "PGDATABASE": throwaway}
    async with JobRunner(kube_url(kubeconfig), workdir=tmp_path / "pods", volumes=volumes, clock=clock,
                         extra_path=[str(postgres.bin_dir)], env=env) as runner:
        async with running_operator(kubeconfig, emulator, clock=clock):
            await api.create(dump_policy(source, postgres))
            await emulator.wait_for(lambda: emulator.stored("batch/v1/cronjobs", NS, "his-full"), timeout=20)
            result = await runner.trigger(NS, "his-full")
            assert result.phase == "Succeeded", result.containers["agent"].log.read_text()[-2000:]
            await emulator.wait_for(lambda: ((emulator.stored(POLICIES, NS, "his") or {}).get("status") or {})
                                    .get("recoveryPoints"), timeout=20)
            await api.create(dump_drill(expected))
            run = await emulator.wait_for(lambda: last_run(emulator, "his-drill").get("sandbox") and
                                          last_run(emulator, "his-drill"), timeout=20)
            [restore] = await runner.run_pending(run["sandbox"])
            assert [*restore.containers] == ["prepare", "agent", "load"]
            assert restore.phase == "Succeeded", {n: c.log.read_text()[-1500:] for n, c in restore.containers.items()}
            await emulator.wait_for(lambda: last_run(emulator, "his-drill").get("phase") == "Verifying", timeout=20)
            [verify] = await runner.run_pending(run["sandbox"])
            final = await emulator.wait_for(lambda: (r := last_run(emulator, "his-drill")).get("outcome")
                                            not in (None, "Running") and r, timeout=20)
            await wait_event(emulator, "his-drill", "DrillSucceeded" if final["outcome"] == "Succeeded"
                             else "DrillFailed")
    # the rows really went through pg_dump -> repository -> pg_restore into the throwaway database
    assert postgres.psql(throwaway, "select count(*) from patients").strip() == str(ROWS)
    return final


async def test_a_pg_dump_drill_restores_into_a_throwaway_database_and_counts_rows(
        emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres):
    run = await drill_once(emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres, str(ROWS))
    assert (run["outcome"], run["reason"]) == ("Succeeded", "Verified"), run
    assert run["verifyOutput"] == str(ROWS)
    assert run["restoreSeconds"] > 0 and run["verifySeconds"] > 0 and run["bytesRestored"] > 0
    assert run["rtoMet"] is True and run["totalSeconds"] >= run["restoreSeconds"]


async def test_a_wrong_row_count_fails_the_dump_drill_with_the_reason(
        emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres):
    run = await drill_once(emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres, "138")
    assert (run["outcome"], run["reason"]) == ("Failed", "UnexpectedOutput"), run
    assert f"printed '{ROWS}', expected '138'" in run["message"]


def kube_url(kubeconfig) -> str:
    import yaml

    return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
