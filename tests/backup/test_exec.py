"""pods/exec end to end: the operator's exec call (lifeline.kube, the kubernetes client's websocket
``stream``) through the real API server to the process kubelet, into a named container of a
running Pod; and refused as the API server refuses it."""
from __future__ import annotations

import pytest

from lifeline.kube import Kube, KubeError


def pod(name: str, *, command: str = "sleep 300") -> dict:
    """Two containers that tell who they are through their environment."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "db"}},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": c, "image": "busybox:1.36", "command": ["sh", "-c", command],
                                     "env": [{"name": "WHO", "value": c}]} for c in ("postgres", "exporter")]}}


def phase(kube, name: str) -> str | None:
    return ((kube.stored("v1/pods", None, name) or {}).get("status") or {}).get("phase")


async def running(kube, name: str, **kwargs) -> None:
    kube.create(pod(name, **kwargs))
    await kube.wait_for(lambda: phase(kube, name) == "Running", timeout=30)


async def test_a_command_runs_in_the_named_container_and_its_streams_and_exit_code_come_back(kube):
    await running(kube, "db-0")
    client = Kube.connect(kube.cluster.kubeconfig)
    try:
        ok = await client.exec(kube.namespace, "db-0", "postgres", ["sh", "-c", "echo ok from $WHO"], timeout=20)
        assert (ok.exit_code, ok.stdout, ok.stderr) == (0, "ok from postgres\n", "")
        bad = await client.exec(kube.namespace, "db-0", "exporter",
                                ["sh", "-c", "echo checkpoint done; echo warning: $WHO is slow >&2; exit 3"],
                                timeout=20)
        assert (bad.exit_code, bad.stdout, bad.stderr) == (3, "checkpoint done\n", "warning: exporter is slow\n")
    finally:
        client.close()


@pytest.mark.parametrize("target,container,expected", [
    ("missing", "postgres", "404"),
    ("db-0", "nginx", "container nginx is not valid"),
    ("done-0", "postgres", "not running"),
])
async def test_exec_is_refused_like_the_api_server_refuses_it(kube, target, container, expected):
    if target == "db-0":
        await running(kube, "db-0")
    if target == "done-0":
        kube.create(pod("done-0", command="true"))
        await kube.wait_for(lambda: phase(kube, "done-0") == "Succeeded", timeout=30)
    client = Kube.connect(kube.cluster.kubeconfig)
    try:
        with pytest.raises(KubeError) as err:
            await client.exec(kube.namespace, target, container, ["true"], timeout=20)
        assert expected in str(err.value)
    finally:
        client.close()
