"""pods/exec end to end: the operator's exec call (lifeline.kube, the kubernetes client's websocket
``stream``) against the emulator's v4 channel protocol, with the exec handler standing in for the
container."""
from __future__ import annotations

import pytest

from lifeline.devstack.pod_exec import status_of
from lifeline.kube import Kube, KubeError

from .conftest import NS


def seed_pod(emulator, name="db-0", phase="Running", containers=("postgres", "exporter")):
    emulator.seed("v1/pods", {"metadata": {"name": name, "namespace": NS, "labels": {"app": "db"}},
                              "spec": {"containers": [{"name": c, "image": "x"} for c in containers]},
                              "status": {"phase": phase}})


async def test_a_command_runs_in_the_named_container_and_its_streams_and_exit_code_come_back(emulator, kubeconfig):
    seen = []

    def handler(req):
        seen.append((req.namespace, req.pod, req.container, req.command))
        return (3, "checkpoint done\n", "warning: slow\n") if req.command[0] == "fail" else (0, "ok\n", "")

    emulator.exec_handler = handler
    seed_pod(emulator)
    kube = Kube.connect(kubeconfig)
    try:
        ok = await kube.exec(NS, "db-0", "postgres", ["psql", "-c", "CHECKPOINT"], timeout=10)
        assert (ok.exit_code, ok.stdout, ok.stderr) == (0, "ok\n", "")
        bad = await kube.exec(NS, "db-0", "exporter", ["fail", "now"], timeout=10)
        assert (bad.exit_code, bad.stdout, bad.stderr) == (3, "checkpoint done\n", "warning: slow\n")
        assert seen == [(NS, "db-0", "postgres", ["psql", "-c", "CHECKPOINT"]), (NS, "db-0", "exporter", ["fail", "now"])]
    finally:
        kube.close()


@pytest.mark.parametrize("pod,container,phase,expected", [
    ("missing", "postgres", "Running", "404"),
    ("db-0", "nginx", "Running", "container nginx is not valid"),
    ("db-0", "postgres", "Succeeded", "completed pod"),
])
async def test_exec_is_refused_like_the_api_server_refuses_it(emulator, kubeconfig, pod, container, phase, expected):
    emulator.exec_handler = lambda req: (0, "", "")
    seed_pod(emulator, phase=phase)
    kube = Kube.connect(kubeconfig)
    try:
        with pytest.raises(KubeError) as err:
            await kube.exec(NS, pod, container, ["true"], timeout=10)
        assert expected in str(err.value)
    finally:
        kube.close()


def test_the_closing_status_carries_the_exit_code_as_the_kubelet_sends_it():
    assert status_of(0) == {"metadata": {}, "status": "Success"}
    failure = status_of(137)
    assert failure["reason"] == "NonZeroExitCode" and failure["details"]["causes"][0] == {
        "reason": "ExitCode", "message": "137"}
