"""Vault stops answering (its process is SIGSTOPped: connections hang, as with a network cut)
during a backup: nothing readable lands in either repository, no RecoveryPoint is published,
KeysAvailable turns False with the reason, and once Vault answers again the next backup is fine.

The agent's pods log in to Vault as a cluster's pods do (Kubernetes auth with their ServiceAccount
token, reviewed by the real API server); no Vault token is handed to them."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from lifeline.keys import health
from tests.keys.conftest import make_transit
from tests.realparts.fixtures import missing
from tests.realparts.openbao import OpenBaoServer

from .conftest import cond, points, policy, recorded, settled, stored, vault_kubernetes_login

MARKER = b"PATIENT-4711-ANNA-MUSTERFRAU-"  # plaintext that must never reach a repository


def repository_bytes(*roots: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for root in roots for p in root.rglob("*") if p.is_file()]


@pytest.fixture
def bao():
    ok, reason = OpenBaoServer.available()
    if not ok:
        missing(reason)  # a skip locally, a failure under CI
    with OpenBaoServer() as server:  # this test's own server: stopping it touches no other test
        yield server


async def test_vault_down_writes_no_plaintext_and_the_next_backup_is_fine(seeded, kube, clock, volumes, bao,
                                                                         monkeypatch):
    transit = make_transit(bao)
    # one attempt of one second, in the operator and (handed on by it) in the agent's pods
    vault_kubernetes_login(kube, bao, transit, monkeypatch, LIFELINE_VAULT_RETRIES="1", LIFELINE_VAULT_TIMEOUT="1")
    repos = (volumes["backup-local"], volumes["backup-offsite"])
    async with kube.operator(clock=clock):
        # backoffLimit 0: one failed Pod fails the Job (a retry would come only after the Job
        # controller's 10 s back-off, and fail the same way)
        kube.create(policy(encryption={"keyRef": transit.ref}, pod={"backoffLimit": 0}))
        await settled(kube)
        full = await kube.run_cronjob("pacs-full")
        assert full.phase == "Succeeded", kube.job_log(full.job)
        await recorded(kube, full.job)
        before = {p: data for p, data in repository_bytes(*repos)}

        (volumes["pacs-data"] / "admission.txt").write_bytes(MARKER * 2000)
        pid = bao.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            clock.advance(900)
            cut = await kube.run_cronjob("pacs-incremental")
            assert cut.phase == "Failed"
            obj = await recorded(kube, cut.job)
            after = repository_bytes(*repos)
            assert not [p for p, data in after if MARKER in data], "plaintext reached a repository"
            new = [p for p, _ in after if p not in before]
            assert not [p for p in new if "/points/" in str(p) or "/data/" in str(p)], new
            assert len(points(kube)) == 1, "no RecoveryPoint for a backup that could not get a key"
            assert obj["status"]["lastBackup"]["outcome"] == "Failed"
            keys = await kube.wait_for(
                lambda: (c := cond(stored(kube), "KeysAvailable")) and c["status"] == "False" and c, timeout=20)
            assert keys["reason"] in ("VaultUnreachable", "KeyRefused"), keys
            print("KeysAvailable while Vault is down:", keys)
            assert transit.token not in str(stored(kube)["status"]), "no secret in the status"
        finally:
            os.kill(pid, signal.SIGCONT)

        health.clear_cache()  # the operator's next check (its 15 s failure cache, expired) finds Vault again
        clock.advance(900)
        healed = await kube.run_cronjob("pacs-incremental")
        assert healed.phase == "Succeeded", kube.job_log(healed.job)
        await recorded(kube, healed.job)
        await kube.wait_for(lambda: len(points(kube)) == 2, timeout=20)
        await kube.wait_for(lambda: cond(stored(kube), "KeysAvailable").get("status") == "True", timeout=20)
        assert not [p for p, data in repository_bytes(*repos) if MARKER in data], "stored encrypted"
