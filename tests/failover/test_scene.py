"""The demo scene runs for real (wall-clock time, a short window) and reports what it measured."""
from __future__ import annotations

from lifeline.devstack.operator_thread import running_operator
from lifeline.devstack.scenes import failover as scene


async def test_the_failover_scene_fails_over_fences_on_return_and_fails_back(emulator, kubeconfig, tmp_path):
    lines: list[str] = []
    async with running_operator(kubeconfig, emulator):  # the real clock, as in `lifeline demo`
        figures = await scene.run(emulator, kubeconfig, tmp_path, lines.append, window="2s", interval="250ms",
                                  startup=0.2)
    text = "\n".join(lines)
    assert figures["fenced_on_return"] is True
    assert 2.0 <= figures["detection_seconds"] < 2.0 + 1.0, figures
    assert abs(figures["achieved_rto_seconds"] - figures["detection_seconds"] - figures["switchover_seconds"]) < 0.003
    assert figures["switchover_seconds"] < 5 and figures["failback_seconds"] < 5
    for wanted in ("site-a goes dark", "phase FailingOver (step Fence)", "achieved RTO", "fenced-unverified",
                   "fenced at once (Prometheus scaled to 0)", "$ lifeline failover back icu-failover",
                   "failed back       Accepted", "breach window 2s (shortened for the demo"):
        assert wanted in text, text
    assert emulator.stored("dr.lifeline.io/v1alpha1/failoverplans", "hospital", "icu-failover") is None
