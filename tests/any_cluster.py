"""A cluster of your own under the tests: ``LIFELINE_TEST_KUBECONFIG=path pytest -m any_cluster``.

The tests marked ``any_cluster`` need only what every conformant cluster has: the API, RBAC,
admission webhooks, controllers and Pods. They run on the local control plane by default, and on
kind or any other cluster when ``LIFELINE_TEST_KUBECONFIG`` names its admin kubeconfig (Lifeline
installed there by ``helm install``, its operator running). Tests that need this machine's control
plane (host paths behind claims, the API server's audit log, stopping a component) are skipped
then, with the reason.

The people of the tests (alice, bob, carol, dave) are the admin impersonating them: kubectl's
``--user NAME`` and ``lifeline --context NAME`` go through kubeconfig users with ``as: NAME``, and
their RoleBindings name them as users, so nothing needs certificates the cluster's CA signed.
"""
from __future__ import annotations

import io
import json
import os
import urllib.error
from pathlib import Path

import kubernetes
import pytest
import yaml

from lifeline.devstack.cluster import ADMIN, PEOPLE
from lifeline.devstack.install import RELEASE, SYSTEM_NAMESPACE

KUBECONFIG_ENV = "LIFELINE_TEST_KUBECONFIG"
RELEASE_ENV = "LIFELINE_TEST_RELEASE"  # NAMESPACE/NAME of the installed release
MARK = "any_cluster"
# What only this machine's control plane has (lifeline.devstack.cluster.Cluster)
LOCAL_PARTS = frozenset({"audit_log", "audit_position", "requests", "writes", "watches", "start_component",
                         "stop_component", "go_dark", "come_back", "node", "identities", "ssl_context", "ca",
                         "webhook_client_ca", "log", "running"})
LOCAL_ONLY = ("needs this machine's control plane (host paths, the API server's audit log or its "
              f"components): runs without {KUBECONFIG_ENV}")


def given() -> Path | None:
    """The kubeconfig ``LIFELINE_TEST_KUBECONFIG`` names, if any."""
    value = os.environ.get(KUBECONFIG_ENV)
    return Path(value).expanduser() if value else None


def release_name() -> tuple[str, str]:
    namespace, _, name = (os.environ.get(RELEASE_ENV) or f"{SYSTEM_NAMESPACE}/{RELEASE}").partition("/")
    return namespace, name or RELEASE


class ExternalCluster:
    """What the tests use of :class:`lifeline.devstack.cluster.Cluster`, for a cluster they did not start."""

    external = True

    def __init__(self, admin_kubeconfig: Path, directory: Path):
        if not admin_kubeconfig.is_file():
            raise pytest.UsageError(f"{KUBECONFIG_ENV}={admin_kubeconfig}: no such file")
        self.directory = directory
        self.source = admin_kubeconfig
        self._api = kubernetes.config.new_client_from_config(config_file=str(admin_kubeconfig))
        self.url = self._api.configuration.host
        self._kubeconfig = self._with_people(directory / "kubeconfig")

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def _with_people(self, path: Path) -> Path:
        """The admin's kubeconfig plus a user and a context per person: the admin's credentials,
        impersonating that person (``as``), in the admin's cluster."""
        config = yaml.safe_load(self.source.read_text())
        current = config.get("current-context")
        context = next(c["context"] for c in config.get("contexts") or [] if c["name"] == current)
        admin = next(u["user"] for u in config.get("users") or [] if u["name"] == context["user"])
        config["users"] = [u for u in config["users"] if u["name"] not in PEOPLE]
        config["contexts"] = [c for c in config["contexts"] if c["name"] not in PEOPLE]
        for person in PEOPLE:
            config["users"].append({"name": person, "user": {**admin, "as": person}})
            config["contexts"].append({"name": person, "context": {**context, "user": person}})
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def kubeconfig_for(self, user: str, path: Path | None = None, namespace: str = "default") -> Path:
        """A kubeconfig whose current context is ``user`` (the admin itself for :data:`ADMIN`)."""
        config = yaml.safe_load(self._kubeconfig.read_text())
        if user != ADMIN:
            config["current-context"] = user
        for c in config["contexts"]:
            if c["name"] == config["current-context"]:
                c["context"]["namespace"] = namespace
        path = Path(path or self.directory / f"kubeconfig-{user}")
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def request(self, method: str, path: str, body: dict | None = None, *, user: str = ADMIN,
                content_type: str = "application/json", timeout: float = 10.0) -> dict:
        """One API call as ``user`` (the admin, or the admin impersonating a person); raises
        ``urllib.error.HTTPError`` on 4xx/5xx, as :meth:`Cluster.request` does."""
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if user != ADMIN:
            headers["Impersonate-User"] = user
        try:
            resp = self._api.call_api(path, method, header_params=headers, body=body, auth_settings=["BearerToken"],
                                      _preload_content=False, _return_http_data_only=True,
                                      _request_timeout=timeout)
        except kubernetes.client.ApiException as exc:
            raise urllib.error.HTTPError(self.url + path, exc.status, exc.reason, exc.headers,
                                         io.BytesIO((exc.body or "").encode() if isinstance(exc.body, str)
                                                    else exc.body or b"")) from None
        raw = resp.data
        return json.loads(raw) if raw else {}

    def __getattr__(self, name: str):
        if name in LOCAL_PARTS:  # the local control plane's own: a test needing them cannot run here
            pytest.skip(f"Cluster.{name} {LOCAL_ONLY}")
        raise AttributeError(name)


def skip_local_only(items: list[pytest.Item]) -> None:
    """On a given cluster, skip the tests that use the cluster and are not marked ``any_cluster``."""
    if given() is None:
        return
    skip = pytest.mark.skip(reason=LOCAL_ONLY)
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()) and item.get_closest_marker(MARK) is None:
            item.add_marker(skip)
