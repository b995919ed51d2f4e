"""Finding 6 of the security review, as the attacks, with the operator's own token on the real API
server: whoever takes that token gets no Secret read, pod exec or namespace delete cluster-wide; it
can bind a role only inside a drill sandbox, and only the sandbox role."""
from __future__ import annotations

import asyncio
import secrets

import pytest

from lifeline.devstack import install
from lifeline.kube import NAMESPACES, ROLEBINDINGS, Kube, KubeError

SANDBOX = {"dr.lifeline.io/sandbox": "true"}


@pytest.fixture
def operator_kube(cluster, chart, tmp_path):
    config = install.operator_kubeconfig(cluster.request, chart, cluster.url, cluster.ca, tmp_path / "op.kubeconfig")
    client = Kube.connect(config)
    yield client
    client.close()


@pytest.fixture
def bystander(cluster):
    """A namespace that never granted Lifeline anything, with a Secret in it."""
    name = f"other-{secrets.token_hex(3)}"
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    cluster.request("POST", f"/api/v1/namespaces/{name}/secrets", {"metadata": {"name": "db"},
                                                                    "stringData": {"password": "s3cret"}})
    yield name
    cluster.request("DELETE", f"/api/v1/namespaces/{name}")


async def forbidden(call) -> bool:
    """Refused by RBAC (403) or by the chart's admission policy (422)."""
    try:
        await call
    except KubeError as exc:
        return exc.status in (403, 422)
    return False


async def refused_once_active(create, undo) -> bool:
    """An admission policy takes effect a moment after it is created (the API server's informers):
    try until it refuses, undoing what got through meanwhile."""
    for _ in range(100):
        try:
            await create()
        except KubeError as exc:
            return exc.status in (403, 422)
        await undo()
        await asyncio.sleep(0.1)  # polls the API server for the policy to load
    return False


async def test_the_operator_reads_secrets_only_where_a_namespace_granted_it(operator_kube, bystander, namespace,
                                                                           cluster):
    assert await forbidden(operator_kube.read_secret_key(bystander, "db", "password"))
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/secrets", {"metadata": {"name": "db"},
                                                                         "stringData": {"password": "ok"}})
    assert await operator_kube.read_secret_key(namespace, "db", "password") == b"ok"  # granted: tenant fixture


async def test_the_operator_cannot_delete_a_namespace_that_is_not_its_sandbox(operator_kube, bystander):
    assert await forbidden(operator_kube.delete(NAMESPACES, None, bystander))
    assert not await operator_kube.delete_sandbox_namespace(bystander, "lifeline-operator-sandbox")


async def test_the_operator_binds_only_its_sandbox_role_only_in_a_sandbox(operator_kube, bystander, cluster):
    binding = lambda role: {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",  # noqa: E731
                            "metadata": {"name": "grab"},
                            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                            "subjects": [{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]}
    rbac = "rbac.authorization.k8s.io/v1"
    assert await refused_once_active(
        lambda: operator_kube.create(ROLEBINDINGS, bystander, binding("lifeline-operator-sandbox")),
        lambda: asyncio.to_thread(cluster.request, "DELETE",
                                  f"/apis/{rbac}/namespaces/{bystander}/rolebindings/grab"))
    sandbox = f"sandbox-{secrets.token_hex(3)}"
    await operator_kube.create_sandbox_namespace({"metadata": {"name": sandbox, "labels": SANDBOX}},
                                                 "lifeline-operator-sandbox")
    try:
        assert await forbidden(operator_kube.create(ROLEBINDINGS, sandbox, binding("admin")))
        assert await forbidden(operator_kube.create(ROLEBINDINGS, sandbox, binding("cluster-admin")))
        assert await operator_kube.delete_sandbox_namespace(sandbox, "lifeline-operator-sandbox")
        gone = cluster.request("GET", f"/api/v1/namespaces/{sandbox}")
        assert gone["metadata"].get("deletionTimestamp"), "its own sandbox it may delete"
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{sandbox}")
