"""A PostgreSQL dump drill end to end with a real PostgreSQL on the real API server: pg_dump of a
database with rows backed up through a Job, restored by the drill's restore Job (the agent streams
the point into the load container's pg_restore), verified by `psql -tAc 'select count(*) from
patients'` in the verify Job; every Job is run by the real Job controller and the process kubelet.

What stands in (docs/drills.md): the sandbox's ``drill-db`` Pod and Service are created, but the
process kubelet runs Pods on the host, where no Service name resolves and the image's entry point is
the bare ``postgres`` binary (no data directory: the Pod fails at once). A fresh, empty database in
the test's PostgreSQL server is the throwaway database; the drill names it with libpq's PG*
variables in ``restore.load.env`` and ``restore.database.env`` (which the verify container gets), so
the commands leave out ``-h "$LIFELINE_DB_HOST"``, which in a cluster is ``drill-db``."""
from __future__ import annotations

import uuid

from lifeline.devstack import live
from lifeline.planning import drill_sandbox

from .conftest import backed_up, policy, run_drill, wait_event

ROWS = 137


def dump_policy(db: str, server) -> dict:
    env = [{"name": "PGHOST", "value": server.host}, {"name": "PGPORT", "value": str(server.port)},
           {"name": "PGUSER", "value": server.user}]
    body = policy("his", source={"command": {"image": "postgres:16", "env": env,
                                             "command": ["pg_dump", "--format=custom", "--no-owner", db]}})
    body["spec"]["destinations"] = [{"name": "local", "filesystem": {"claimName": "backup-local", "path": "/his"}}]
    return body


def dump_drill(expected: str, server, throwaway: str) -> dict:
    libpq = [{"name": "PGHOST", "value": server.host}, {"name": "PGPORT", "value": str(server.port)},
             {"name": "PGUSER", "value": server.user}, {"name": "PGDATABASE", "value": throwaway},
             {"name": "PGPASSWORD", "value": "drill-only"}]
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RestoreDrill", "metadata": {"name": "his-drill"},
            "spec": {"policyName": "his", "mode": "Once",
                     "restore": {"database": {"image": "postgres:16", "port": 5432,
                                              "env": [{"name": "POSTGRES_PASSWORD", "value": "drill-only"}, *libpq]},
                                 "load": {"image": "postgres:16",
                                          "command": ["sh", "-c",
                                                      'pg_restore --no-owner --exit-on-error -d "$PGDATABASE"'],
                                          "env": libpq}},
                     "verify": {"command": {"image": "postgres:16",
                                            "command": ["sh", "-c", "psql -tAc 'select count(*) from patients'"],
                                            "expectOutput": expected}}}}


def source_database(postgres) -> tuple[str, str]:
    """(a database with ROWS patients, a fresh empty one: the throwaway database a drill-db pod would be)."""
    source = postgres.createdb(f"his_{uuid.uuid4().hex[:8]}")
    postgres.psql(source, "CREATE TABLE patients (id int primary key, name text);"
                          f"INSERT INTO patients SELECT g, 'patient ' || g FROM generate_series(1, {ROWS}) g;")
    return source, postgres.createdb(f"drill_{uuid.uuid4().hex[:8]}")


def pod_of(kube, sandbox: str, job: str) -> dict:
    [pod] = kube.objects("pods", namespace=sandbox, selector=f"job-name={job}")[-1:]
    return pod


def exit_codes(pod: dict) -> dict[str, int]:
    statuses = pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
    return {c["name"]: c["state"]["terminated"]["exitCode"] for c in statuses if "terminated" in c["state"]}


def env_of(pod: dict, container: str) -> dict[str, str]:
    spec = next(c for c in pod["spec"]["containers"] if c["name"] == container)
    return {e["name"]: e.get("value") for e in spec.get("env") or []}


async def dump_drill_run(kube, clock, policy_body: dict, drill_body: dict, before_drill=None) -> tuple[dict, dict]:
    """Back the policy up, (``before_drill(point)``), drill; (the point, the drill's finished run).

    Checks on the way what the sandbox ran: a restore Job whose pod streamed into ``load`` with every
    container exiting 0, and the ``drill-db`` Service in front of the ``drill-db`` Pod."""
    async with kube.operator(clock=clock):
        point = await backed_up(kube, policy_body)
        if before_drill is not None:
            before_drill(point)
        kube.create(drill_body)
        run = await run_drill(kube, "his-drill")
        sandbox = run["sandbox"]
        restore = pod_of(kube, sandbox, drill_sandbox.RESTORE_JOB)
        assert [c["name"] for c in restore["spec"]["initContainers"]] == ["prepare"]
        assert [c["name"] for c in restore["spec"]["containers"]] == ["agent", "load"]
        assert exit_codes(restore) == {"prepare": 0, "agent": 0, "load": 0}, \
            {c: live.job_log(kube.cluster, sandbox, drill_sandbox.RESTORE_JOB, c)[-1500:] for c in ("agent", "load")}
        assert live.job_end(kube.stored("jobs", sandbox, drill_sandbox.RESTORE_JOB)) == "Succeeded"
        verify = pod_of(kube, sandbox, drill_sandbox.VERIFY_JOB)
        assert env_of(verify, "verify")["LIFELINE_DB_HOST"] == drill_sandbox.DATABASE
        db_pod = kube.stored("pods", sandbox, drill_sandbox.DATABASE)
        service = kube.stored("services", sandbox, drill_sandbox.DATABASE)
        assert service["spec"]["ports"][0]["port"] == 5432
        assert all(db_pod["metadata"]["labels"].get(k) == v for k, v in service["spec"]["selector"].items())
        await wait_event(kube, "his-drill", "DrillSucceeded" if run["outcome"] == "Succeeded" else "DrillFailed")
    return point, run


async def test_a_pg_dump_drill_restores_into_a_throwaway_database_and_counts_rows(
        kube, clock, volumes, key_text, postgres):
    kube.claim("backup-local", volumes["backup-local"])
    kube.secret("pacs-key", {"key": key_text})
    source, throwaway = source_database(postgres)
    _, run = await dump_drill_run(kube, clock, dump_policy(source, postgres),
                                  dump_drill(str(ROWS), postgres, throwaway))
    assert (run["outcome"], run["reason"]) == ("Succeeded", "Verified"), run
    assert run["verifyOutput"] == str(ROWS)
    assert run["restoreSeconds"] > 0 and run["verifySeconds"] > 0 and run["bytesRestored"] > 0
    assert run["rtoMet"] is True and run["totalSeconds"] >= run["restoreSeconds"]
    # the rows really went through pg_dump -> repository -> pg_restore into the throwaway database
    assert postgres.psql(throwaway, "select count(*) from patients").strip() == str(ROWS)


async def test_a_wrong_row_count_fails_the_dump_drill_with_the_reason(kube, clock, volumes, key_text, postgres):
    kube.claim("backup-local", volumes["backup-local"])
    kube.secret("pacs-key", {"key": key_text})
    source, throwaway = source_database(postgres)
    _, run = await dump_drill_run(kube, clock, dump_policy(source, postgres),
                                  dump_drill("138", postgres, throwaway))
    assert (run["outcome"], run["reason"]) == ("Failed", "UnexpectedOutput"), run
    assert f"printed '{ROWS}', expected '138'" in run["message"]
    assert postgres.psql(throwaway, "select count(*) from patients").strip() == str(ROWS)
