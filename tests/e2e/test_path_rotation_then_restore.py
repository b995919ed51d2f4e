"""Path 3 of issue 9: a backup under a vault-transit key (real OpenBao), then `lifeline keys rotate`
on both repositories and retirement of the old key version, then a drill of the point taken before
the rotation: it restores and verifies, through key objects now wrapped only under the new version."""
from __future__ import annotations

import base64
import json

import pytest

from lifeline.keys import health
from tests.drill.test_drill_e2e import drill, run_drill
from tests.integration.operator_harness import running_operator
from tests.keys.conftest import make_transit, run_lifeline

from .conftest import NS, points, policy, recorded, settled

pytestmark = pytest.mark.usefixtures("drill_timer")


def wrapped_versions(repo) -> set[str]:
    return {base64.b64decode(json.loads(p.read_text())["wrapped"]).split(b":")[1].decode()
            for p in (repo / "keys").iterdir()}


async def test_a_point_from_before_the_rotation_restores_after_it(
        emulator, kubeconfig, api, cluster, runner, clock, volumes, openbao, monkeypatch):
    transit = make_transit(openbao)
    health.clear_cache()
    for name, value in (("VAULT_ADDR", transit.addr), ("VAULT_TOKEN", transit.token)):
        monkeypatch.setenv(name, value)  # the operator's own Vault settings (it runs in this process)
    runner.env.update(VAULT_TOKEN=transit.token)
    repos = [volumes["backup-local"] / "repos" / "pacs", volumes["backup-offsite"] / "pacs"]
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(policy(encryption={"keyRef": transit.ref}))
        await settled(emulator)
        full = await runner.trigger(NS, "pacs-full")
        assert full.phase == "Succeeded", full.containers["agent"].log.read_text()[-2000:]
        await recorded(emulator, full.job)
        [old] = points(emulator)
        assert all(wrapped_versions(r) == {"v1"} for r in repos)

        r = run_lifeline("keys", "rotate", "--repo", f"file://{repos[0]}", "--key", transit.ref, "--json",
                         "--actor", "dr-officer@his", env=transit.env)
        assert r.rc == 0, r.err
        assert r.json["latest_version"] == 2
        for extra in (["--no-rotate"], ["--no-rotate", "--min-decryption-version", "2"]):
            r = run_lifeline("keys", "rotate", "--repo", f"file://{repos[1]}", "--key", transit.ref, *extra,
                             env=transit.env)
            assert r.rc == 0, r.err
        assert all(wrapped_versions(r) == {"v2"} for r in repos)
        key = transit.client.secrets.transit.read_key(name=transit.key, mount_point=transit.mount)["data"]
        assert key["min_decryption_version"] == 2, "version 1 is retired: only the rewrapped keys can work"

        clock.advance(3600)
        await api.create(drill(point={"strategy": "Named", "name": old["metadata"]["name"]}))
        run = await run_drill(emulator, runner)
        assert run["outcome"] == "Succeeded", run
        assert run["recoveryPoint"] == old["metadata"]["name"]
        assert run["verifyOutput"] == '{"studies": 1}'
        assert run["pointAgeSeconds"] > 3000  # the hour the clock moved, less the backup's own run time
