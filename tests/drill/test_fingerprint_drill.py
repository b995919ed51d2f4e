"""spec.fingerprint end to end with a real PostgreSQL on the real API server: the backup Job's
fingerprint container runs `psql -tAc 'select count(*) from patients'` against the dumped database,
the agent carries the count in its termination summary, the operator records it as the
RecoveryPoint's `verifyOutput` tag, and a drill with `compareToBackup: true` compares the restored
database's count with it.

Stand-ins as in test_dump_drill.py: the throwaway database is a fresh database of the test's
server, named to the drill's containers by libpq's PG* variables."""
from __future__ import annotations

from .test_dump_drill import ROWS, dump_drill, dump_drill_run, dump_policy, exit_codes, source_database


def fingerprint_policy(db: str, server) -> dict:
    body = dump_policy(db, server)
    # no PG* variables of its own: it inherits the dump's, so it counts in the same database
    body["spec"]["fingerprint"] = {"image": "postgres:16",
                                   "command": ["psql", "-tAc", "select count(*) from patients", db]}
    return body


def comparing_drill(server, throwaway: str) -> dict:
    body = dump_drill("unused", server, throwaway)
    cmd = body["spec"]["verify"]["command"]
    del cmd["expectOutput"]
    cmd["compareToBackup"] = True
    return body


async def backup_then_drill(kube, clock, volumes, key_text, postgres, recorded: str | None = None
                            ) -> tuple[dict, dict]:
    """Back up, optionally overwrite the point's recorded value, drill; (point, the drill's run)."""
    kube.claim("backup-local", volumes["backup-local"])
    kube.secret("pacs-key", {"key": key_text})
    source, throwaway = source_database(postgres)

    def tamper(point: dict) -> None:
        # the backup pod's containers, the fingerprint among them, as the kubelet reported them
        [pod] = kube.objects("pods")  # the one backup Job's pod: nothing else ran in the namespace
        spec = pod["spec"]
        assert [c["name"] for c in spec["initContainers"] + spec["containers"]] == \
            ["prepare", "dump", "agent", "fingerprint"]
        assert exit_codes(pod) == {"prepare": 0, "dump": 0, "agent": 0, "fingerprint": 0}
        if recorded is not None:
            kube.patch("RecoveryPoint", point["metadata"]["name"], {"spec": {"tags": {"verifyOutput": recorded}}})

    return await dump_drill_run(kube, clock, fingerprint_policy(source, postgres), comparing_drill(postgres, throwaway),
                                before_drill=tamper)


async def test_the_backup_records_the_fingerprint_and_the_drill_compares_equal(
        kube, clock, volumes, key_text, postgres):
    point, run = await backup_then_drill(kube, clock, volumes, key_text, postgres)
    assert point["spec"]["tags"]["verifyOutput"] == str(ROWS)
    assert (run["outcome"], run["reason"]) == ("Succeeded", "Verified"), run
    assert run["verifyOutput"] == str(ROWS)


async def test_a_drill_whose_count_differs_from_the_recorded_one_fails_naming_both(
        kube, clock, volumes, key_text, postgres):
    point, run = await backup_then_drill(kube, clock, volumes, key_text, postgres, recorded="138")
    assert point["spec"]["tags"]["verifyOutput"] == str(ROWS)  # what the backup recorded before the tampering
    assert (run["outcome"], run["reason"]) == ("Failed", "UnexpectedOutput"), run
    assert f"'{ROWS}'" in run["message"] and "'138'" in run["message"], run["message"]
