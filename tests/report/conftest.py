"""The report tests' API client."""
from __future__ import annotations

import pytest

from lifeline.kube import Kube


@pytest.fixture()
async def client(cluster):
    """The project's own API client (what the CLI and the operator use), as the cluster's admin."""
    kube = Kube.connect(cluster.kubeconfig)
    yield kube
    kube.close()
