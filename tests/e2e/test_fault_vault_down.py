"""Vault stops answering (its process is SIGSTOPped: connections hang, as with a network cut)
during a backup: nothing readable lands in either repository, no RecoveryPoint is published,
KeysAvailable turns False with the reason, and once Vault answers again the next backup is fine."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from lifeline.keys import health
from tests.integration.operator_harness import running_operator
from tests.keys.conftest import make_transit
from tests.realparts.fixtures import missing
from tests.realparts.openbao import OpenBaoServer

from .conftest import NS, cond, points, policy, recorded, settled, stored

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


async def test_vault_down_writes_no_plaintext_and_the_next_backup_is_fine(
        emulator, kubeconfig, api, cluster, runner, clock, volumes, bao, monkeypatch):
    transit = make_transit(bao)
    health.clear_cache()
    for name, value in (("VAULT_ADDR", transit.addr), ("VAULT_TOKEN", transit.token),
                        ("LIFELINE_VAULT_RETRIES", "1"), ("LIFELINE_VAULT_TIMEOUT", "1")):
        monkeypatch.setenv(name, value)  # the operator's own Vault settings (it runs in this process)
    runner.env.update(VAULT_TOKEN=transit.token, LIFELINE_VAULT_RETRIES="1", LIFELINE_VAULT_TIMEOUT="1")
    repos = (volumes["backup-local"], volumes["backup-offsite"])
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(policy(encryption={"keyRef": transit.ref}))
        await settled(emulator)
        full = await runner.trigger(NS, "pacs-full")
        assert full.phase == "Succeeded", full.containers["agent"].log.read_text()
        await recorded(emulator, full.job)
        before = {p: data for p, data in repository_bytes(*repos)}

        (volumes["pacs-data"] / "admission.txt").write_bytes(MARKER * 2000)
        pid = bao._child.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            clock.advance(900)
            cut = await runner.trigger(NS, "pacs-incremental")
            assert cut.phase == "Failed"
            obj = await recorded(emulator, cut.job)
            after = repository_bytes(*repos)
            assert not [p for p, data in after if MARKER in data], "plaintext reached a repository"
            new = [p for p, _ in after if p not in before]
            assert not [p for p in new if "/points/" in str(p) or "/data/" in str(p)], new
            assert len(points(emulator)) == 1, "no RecoveryPoint for a backup that could not get a key"
            assert obj["status"]["lastBackup"]["outcome"] == "Failed"
            keys = await emulator.wait_for(
                lambda: (c := cond(stored(emulator), "KeysAvailable")) and c["status"] == "False" and c, timeout=20)
            assert keys["reason"] in ("VaultUnreachable", "KeyRefused"), keys
            print("KeysAvailable while Vault is down:", keys)
            assert transit.token not in str(stored(emulator)["status"]), "no secret in the status"
        finally:
            os.kill(pid, signal.SIGCONT)

        health.clear_cache()  # the operator's next check (its 15 s failure cache, expired) finds Vault again
        clock.advance(900)
        healed = await runner.trigger(NS, "pacs-incremental")
        assert healed.phase == "Succeeded", healed.containers["agent"].log.read_text()
        obj = await recorded(emulator, healed.job)
        assert len(points(emulator)) == 2
        await emulator.wait_for(lambda: cond(stored(emulator), "KeysAvailable").get("status") == "True", timeout=20)
        assert not [p for p, data in repository_bytes(*repos) if MARKER in data], "stored encrypted"
