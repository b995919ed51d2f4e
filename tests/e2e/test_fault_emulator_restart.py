"""The API server goes away and comes back (the emulator's HTTP server is stopped and a new one
starts on the same port over the same store, as an apiserver restart keeps etcd): the operator
re-establishes its watches and reconciles a change made after the restart."""
from __future__ import annotations

import socket

from lifeline.devstack.emulator import write_kubeconfig
from lifeline.devstack.operator_thread import watching
from tests.integration.operator_harness import running_operator
from tests.served import Served

from .conftest import NS, policy, settled, stored


def refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_the_operator_recovers_its_watches_after_an_api_restart(
        emulator, clock, tmp_path, volumes, key_text):
    from tests.backup.conftest import seed_pvc, seed_secret

    for claim in ("pacs-data", "backup-local", "backup-offsite"):
        seed_pvc(emulator, claim)
    seed_secret(emulator, "pacs-key", {"key": key_text})
    server = Served(emulator)
    url = await server.up()
    kubeconfig = write_kubeconfig(url, tmp_path / "kubeconfig")
    try:
        async with running_operator(kubeconfig, emulator, clock=clock):
            from tests.kube_client import Api

            api = Api(kubeconfig)
            try:
                await api.create(policy())
                await settled(emulator)
                watches_before = sum(1 for r in list(emulator) if r.params.get("watch") in ("true", "True", "1"))

                await server.down()
                assert refuses(server.port), "the API is really gone"
                assert await server.up() == url, "back on the same address"

                changed = await api.patch("BackupPolicy", "pacs", {"spec": {"schedule": {"full": "45 3 * * *"}}})
                assert changed["metadata"]["generation"] == 2
                obj = await emulator.wait_for(
                    lambda: (o := stored(emulator)) and o["status"].get("observedGeneration") == 2 and o, timeout=30)
                cron = await emulator.wait_for(
                    lambda: (c := emulator.stored("batch/v1/cronjobs", NS, "pacs-full"))
                    and c["spec"]["schedule"] == "45 3 * * *" and c, timeout=30)
                assert cron["metadata"]["ownerReferences"][0]["name"] == "pacs"
                assert next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
                watches_after = sum(1 for r in list(emulator) if r.params.get("watch") in ("true", "True", "1"))
                assert watches_after > watches_before, "new watch requests after the restart"
                assert "backuppolicies" in watching(emulator)
            finally:
                api.client.close()
    finally:
        await server.down()
