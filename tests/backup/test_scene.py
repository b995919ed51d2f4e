"""The demo scene (`lifeline demo` shows it): a policy over a local directory, a full and an
incremental backup through the job runner, the RecoveryPoints and the status printed."""
from __future__ import annotations

from lifeline.devstack.scenes import backup as scene
from tests.integration.operator_harness import running_operator


async def test_the_backup_scene_shows_two_recovery_points_and_a_ready_policy(emulator, kubeconfig, tmp_path):
    lines: list[str] = []
    async with running_operator(kubeconfig, emulator):
        result = await scene.run(emulator, kubeconfig, tmp_path, lines.append)
    text = "\n".join(lines)
    assert result["ok"], text
    full, incremental = sorted(result["recoveryPoints"], key=lambda p: p["spec"]["startTime"])
    assert (full["spec"]["type"], incremental["spec"]["type"]) == ("full", "incremental")
    assert incremental["spec"]["parent"] == full["metadata"]["name"]
    assert "$ kubectl get recoverypoints" in text and "icu-trends-incremental" in text
    assert "OffSiteCopy" in text and "OffSiteCopyStored" in text
