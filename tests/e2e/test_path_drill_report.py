"""Path 1 of issue 9: a backup run by the real Job controller → a RecoveryPoint → a RestoreDrill
(mode Once) through the real agent → the HTML compliance report shows the drill's measured RTO and
the policy's points, as read back from the API server (nothing handed to the report but a client)."""
from __future__ import annotations

import html

import pytest

from lifeline.kube import Kube
from lifeline.observability.report import write_report_async
from lifeline.observability.report_html import secs, size

from .conftest import backed_up, drill, run_drill, stored

pytestmark = pytest.mark.usefixtures("drill_timer")


async def test_backup_point_drill_and_the_report_shows_the_measured_rto(seeded, kube, clock, tmp_path):
    async with kube.operator(clock=clock):
        point = await backed_up(kube)
        kube.create(drill())
        run = await run_drill(kube)
        assert run["outcome"] == "Succeeded", run
        assert run["recoveryPoint"] == point["metadata"]["name"]
        client = Kube.connect(str(kube.cluster.kubeconfig))  # a reader of the whole cluster, as an admin runs it
        try:
            page = await write_report_async(client, tmp_path / "report.html", now=clock.now())
        finally:
            client.close()

    text = html.unescape(page.read_text())
    # the drill's row: its measured total (a figure the agent's run produced) against the policy's RTO
    assert run["totalSeconds"] > 0 and run["rtoMet"] is True
    rows = text.split("<tr>")
    drill_row = next(r for r in rows if point["metadata"]["name"] in r and "succeeded</span>" in r)
    assert secs(run["totalSeconds"]) in drill_row and secs(run["rtoSeconds"]) in drill_row, drill_row
    assert "RTO met" in drill_row
    # the policy's point, with its measured size and both copies
    point_row = next(r for r in rows if point["metadata"]["name"] in r and "<td>full</td>" in r)
    assert size(point["spec"]["sizeBytes"]) in point_row
    assert "local, offsite" in point_row
    assert stored(kube, "pacs")["status"]["recoveryPoints"] == 1
    assert f"{kube.namespace}/pacs-drill" in text
