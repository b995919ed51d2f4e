"""One set of Kube calls for every kind: where each goes, and what a missing object means."""
from __future__ import annotations

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from lifeline.api import BY_KIND
from lifeline.kube import JOBS, NAMESPACES, Kube, KubeError


def test_a_resource_and_a_kindinfo_name_their_paths_alike():
    assert Kube._path(JOBS, "ns", "j") == "/apis/batch/v1/namespaces/ns/jobs/j"
    assert Kube._path(NAMESPACES, None, "sandbox") == "/api/v1/namespaces/sandbox"
    assert Kube._path(BY_KIND["Restore"], "ns", "r", "status") == \
        "/apis/dr.lifeline.io/v1alpha1/namespaces/ns/restores/r/status"
    assert Kube._path(BY_KIND["RecoveryPoint"], None) == "/apis/dr.lifeline.io/v1alpha1/recoverypoints"


@pytest.fixture
def kube_404():
    kube = Kube(kubernetes.client.ApiClient())
    calls = []

    def raw(method, path, body=None, query=None, content_type="application/json"):
        calls.append((method, path, content_type))
        raise ApiException(status=404, reason="Not Found")

    kube._raw = raw
    kube.calls = calls
    yield kube
    kube.close()


async def test_a_missing_object_is_a_404_unless_the_caller_says_missing_ok(kube_404):
    with pytest.raises(KubeError) as got:
        await kube_404.get(JOBS, "ns", "gone")
    assert got.value.status == 404 and str(got.value).startswith("get Job ns/gone: 404")
    assert await kube_404.get(JOBS, "ns", "gone", missing_ok=True) is None
    with pytest.raises(KubeError):
        await kube_404.delete(JOBS, "ns", "gone")
    assert await kube_404.delete(JOBS, "ns", "gone", missing_ok=True) is None


async def test_a_status_patch_is_a_merge_patch_of_the_subresource(kube_404):
    with pytest.raises(KubeError) as got:
        await kube_404.patch(BY_KIND["Restore"], "ns", "r", {"status": {}}, subresource="status")
    assert str(got.value).startswith("patch status of Restore ns/r")
    assert kube_404.calls[-1] == ("PATCH", "/apis/dr.lifeline.io/v1alpha1/namespaces/ns/restores/r/status",
                                  "application/merge-patch+json")


async def test_discovery_is_asked_once_for_the_controller_and_the_webhook_until_it_is_old():
    kube = Kube(kubernetes.client.ApiClient())
    calls = []

    def raw(method, path, body=None, query=None, content_type="application/json"):
        calls.append(path)
        if path == "/apis":
            return {"groups": [{"name": "apps", "preferredVersion": {"version": "v1"}}]}
        group = "apps" if path.startswith("/apis/apps") else ""
        return {"resources": [{"name": "deployments" if group else "configmaps", "namespaced": True,
                               "kind": "Deployment" if group else "ConfigMap", "verbs": ["get", "list"]}]}

    kube._raw = raw
    first = await kube.discover()
    assert [r.name for r in first] == ["configmaps", "deployments.apps"]
    assert await kube.discover() is first and len(calls) == 3, "one answer serves every caller"
    assert await kube.discover(max_age=0) == first and len(calls) == 6, "an old answer is asked again"
    kube.close()
