"""pytest fixtures for a Kubernetes API: the honest emulator served over real HTTP.

No API server can run on our machines, so every test that needs one gets a fresh
:class:`~lifeline.devstack.emulator.HonestEmulator` (builtins, third-party CRDs and
Lifeline's CRDs installed), served on a free loopback port, and a kubeconfig that
kubectl, kopf and the ``kubernetes`` client all accept.

Why not kmock's own ``kmock`` fixture (kmock ships it as a pytest plugin)? It builds a
bare instance of a class named in ``kmock_cls``, without our resources, and its
class lookup only works for top-level modules. These fixtures do what it does
(handler entered, server started, torn down after the test) on top of
:func:`~lifeline.devstack.emulator.make_emulator`; the ``kmock`` fixture stays the bare
mock, for tests that want to script raw HTTP answers.

The server runs in the test's event loop: tests that use ``kube_url`` or ``kubeconfig``
must be ``async def``, and blocking clients (kubectl, the ``kubernetes`` client) must
run in a thread (``asyncio.to_thread``) or a subprocess, or they would wait forever
for a loop that is waiting for them.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lifeline.devstack.emulator import HonestEmulator, make_emulator, serve, write_kubeconfig


@pytest.fixture()
def emulator() -> HonestEmulator:
    """A fresh emulator: the ``default`` and ``kube-system`` namespaces, all kinds served, no objects."""
    return make_emulator()


@pytest.fixture()
async def kube_url(emulator: HonestEmulator) -> AsyncIterator[str]:
    """The emulator served over HTTP on 127.0.0.1 for this test: its base URL."""
    async with serve(emulator) as url:
        yield url


@pytest.fixture()
def kubeconfig(kube_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig pointing at ``kube_url``, also made the default for this test.

    ``KUBECONFIG`` is set for subprocesses (kubectl) and kopf's own kubeconfig login; the
    ``kubernetes`` client read ``$KUBECONFIG`` once, at import (and kopf imports it at its
    own import), so its default location is patched too.
    """
    path = write_kubeconfig(kube_url, tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    try:
        import kubernetes.config.kube_config as kube_config
    except ImportError:  # pragma: no cover - kubernetes is a dependency of the operator
        pass
    else:
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    return path
