"""Path 3 of issue 9: a backup under a vault-transit key (real OpenBao), then `lifeline keys rotate`
on both repositories and retirement of the old key version, then a drill of the point taken before
the rotation: it restores and verifies, through key objects now wrapped only under the new version.

The backup and the drill's restore run in pods that log in to OpenBao with their ServiceAccount
tokens (Kubernetes auth, reviewed by the real API server), as in a cluster."""
from __future__ import annotations

import base64
import json

import pytest

from tests.keys.conftest import make_transit, run_lifeline

from .conftest import drill, points, policy, recorded, run_drill, settled, vault_kubernetes_login

pytestmark = pytest.mark.usefixtures("drill_timer")


def wrapped_versions(repo) -> set[str]:
    return {base64.b64decode(json.loads(p.read_text())["wrapped"]).split(b":")[1].decode()
            for p in (repo / "keys").iterdir()}


async def test_a_point_from_before_the_rotation_restores_after_it(seeded, kube, clock, volumes, openbao, monkeypatch):
    transit = make_transit(openbao)
    vault_kubernetes_login(kube, openbao, transit, monkeypatch)
    repos = [volumes["backup-local"] / "repos" / "pacs", volumes["backup-offsite"] / "pacs"]
    async with kube.operator(clock=clock):
        kube.create(policy(encryption={"keyRef": transit.ref}))
        await settled(kube)
        full = await kube.run_cronjob("pacs-full")
        assert full.phase == "Succeeded", kube.job_log(full.job)
        await recorded(kube, full.job)
        [old] = points(kube)
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

        # an hour later on the operator's clock (the point's time is the agent's: real time, a few
        # seconds after the clock's start)
        clock.advance(3600)
        kube.create(drill(point={"strategy": "Named", "name": old["metadata"]["name"]}))
        run = await run_drill(kube)
        assert run["outcome"] == "Succeeded", run
        assert run["recoveryPoint"] == old["metadata"]["name"]
        assert run["verifyOutput"] == '{"studies": 1}'
        assert run["pointAgeSeconds"] > 3000  # the hour the clock moved, less the backup's own run time
