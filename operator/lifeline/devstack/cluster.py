"""A real Kubernetes control plane on this machine: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and our process kubelet, each its own process on 127.0.0.1.

The four upstream components come from one binary built from the ``k8s.io/kubernetes`` and
``go.etcd.io/etcd/server/v3`` Go modules (``tools/kube``, built into ``.tools/bin/kube`` by
``scripts/build-kube.sh``). Nothing is imitated above the kubelet: authentication is by client
certificates from a CA made here, authorization is ``Node,RBAC``, admission and its webhooks are
the API server's own, and the real controllers run Jobs, CronJobs, garbage collection, namespace
deletion, Deployments, StatefulSets, ServiceAccount tokens and host-path volume provisioning.
With ``snapshots=True`` the real CSI snapshot-controller (``tools/snapshot``, built by
``scripts/build-snapshot-controller.sh``) runs too, on the upstream VolumeSnapshot CRDs and RBAC; the
CSI driver under it is :class:`~lifeline.devstack.snapshotter.HostPathCSI`, a stand-in.

People are client certificates in the admin kubeconfig, one user entry each (``kubectl --user
alice``): :data:`PEOPLE` names them and their groups. Every process is a
:class:`~lifeline.devstack.children.ChildServer` (own process group, a watchdog that stops it if
we die); :meth:`Cluster.stop` leaves no process behind.
"""
from __future__ import annotations

import json
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import pki
from .children import ChildServer, NotReady, free_port, wait_for
from .snapshotter import DRIVER as CSI_DRIVER, STORAGE_CLASS as CSI_STORAGE_CLASS

ROOT = Path(__file__).resolve().parents[3]
from .cluster_version import KUBE_VERSION
ADMIN = "lifeline-admin"
# People for tests and the demo: user -> groups. alice and bob approve restores, carol is a DBA
# without approval rights, dave is a tenant of another namespace; erin heads the HIS department and
# frank information management, both approvers too (for approval policies that name those groups).
PEOPLE: dict[str, tuple[str, ...]] = {
    "alice": ("hospital-dba", "dr-approvers"),
    "bob": ("dr-approvers",),
    "carol": ("hospital-dba",),
    "dave": ("tenants",),
    "erin": ("dr-approvers", "his-department-heads"),
    "frank": ("dr-approvers", "it-management"),
}
SERVICE_CIDR = "10.96.0.0/16"  # allocated, never routed: nothing here runs kube-proxy
DEFAULT_STORAGE_CLASS = "standard"
CONTROLLERS = "*"  # every controller that is on by default upstream (kind's choice too)
CRONJOB_CONTROLLER = "cronjob-controller"
STARTUP_TIMEOUT = 90.0


class ClusterError(RuntimeError):
    pass


def kube_binary() -> Path | None:
    """``.tools/bin/kube`` of this checkout, else ``$LIFELINE_KUBE_BIN``, else ``kube`` on PATH."""
    for candidate in (os.environ.get("LIFELINE_KUBE_BIN"), ROOT / ".tools" / "bin" / "kube",
                      shutil.which("lifeline-kube")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


MISSING = "the control-plane binary .tools/bin/kube is missing; `make test` builds it (scripts/build-kube.sh)"
SNAPSHOT_SHARE = ROOT / ".tools" / "snapshot"  # the VolumeSnapshot CRDs and the controller's RBAC
SNAPSHOT_CONTROLLER = ROOT / ".tools" / "bin" / "snapshot-controller"
SNAPSHOT_IDENTITY = "system:serviceaccount:kube-system:snapshot-controller"  # what its RBAC binds
SNAPSHOT_CLASS = "csi-hostpath-snapclass"
MISSING_SNAPSHOTS = ("the CSI snapshot-controller .tools/bin/snapshot-controller or its CRDs in .tools/snapshot "
                     "are missing; `make test` builds them (scripts/build-snapshot-controller.sh)")
# Where each kind of the snapshot-controller's RBAC manifest is created.
_RBAC_PATHS = {"ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
               "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
               "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
               "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
               "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"}


@dataclass(frozen=True)
class Identity:
    """How one user reaches the API: certificate files (for ``ssl``/aiohttp/the kubernetes client)."""
    user: str
    cert: Path
    key: Path


class AuditLog:
    """The API server's audit log, read as it grows: each call parses only the lines appended since
    the last one (tests poll it), and keeps of each record only what callers read."""

    KEPT = ("stage", "verb", "user", "objectRef", "requestURI", "responseStatus")

    def __init__(self, path: Path):
        self.path, self._offset, self._events, self._lock = path, 0, [], threading.Lock()

    def events(self, since: int = 0) -> list[dict]:
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    data = f.read()
            except FileNotFoundError:
                return []
            complete = data.rfind(b"\n") + 1  # a line still being written waits for the next call
            for line in data[:complete].splitlines():
                if line:
                    event = json.loads(line)
                    self._events.append({k: event[k] for k in self.KEPT if k in event})
            self._offset += complete
            return self._events[since:]


class Cluster:
    """One control plane and one process-kubelet node. ``start()``/``stop()`` or ``with``.

    ``directory`` holds PKI, kubeconfig, etcd data and logs; a temp directory (removed on stop)
    when not given. ``name`` tells two sites apart in kubeconfig entries and the node name.
    """

    def __init__(self, directory: Path | None = None, *, name: str = "lifeline", kubelet: bool = True,
                 kubelet_args: list[str] | None = None, say=None, audit_reads_of: tuple[str, ...] = (),
                 crds: Path | None = None, cronjobs: bool = True, snapshots: bool = False):
        self.name = name
        self._owned = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix=f"kube-{name}-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.with_kubelet = kubelet
        self.audit_reads_of = tuple(audit_reads_of)  # users whose reads the audit log records too
        self._audit = AuditLog(self.audit_log)
        self._dark: list[str] = []  # what ran before go_dark(), for come_back()
        # CustomResourceDefinitions (a directory of YAML) served before the controllers start: the
        # garbage collector reads discovery when it starts and then only every 30 s, so an owner of a
        # kind added later is not collected for up to half a minute.
        self.crds = crds
        # False: the CronJob controller runs only while the "cronjob-controller" component is started
        # (start_component), so that tests which start every Job themselves never meet a scheduled one.
        self.cronjobs = cronjobs
        self.snapshots = snapshots  # the VolumeSnapshot CRDs, the snapshot-controller, a CSI StorageClass
        self.kubelet_args = list(kubelet_args or [])
        self.node = f"{name}-node"
        self.say = say or (lambda msg: None)
        self.binary = kube_binary()
        self.port: int | None = None
        self._children: dict[str, ChildServer] = {}
        self._argv: dict[str, tuple[list[str], dict | None]] = {}
        self.identities: dict[str, Identity] = {}

    # ---- what callers use --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def ca(self) -> Path:
        return self.directory / "pki" / "ca.crt"

    def ssl_context(self, user: str = ADMIN) -> ssl.SSLContext:
        ident = self.identities[user]
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(ident.cert), str(ident.key))
        return ctx

    def request(self, method: str, path: str, body: dict | None = None, *, user: str = ADMIN,
                content_type: str = "application/json", timeout: float = 10.0) -> dict:
        """One API call as ``user`` (blocking); raises ``urllib.error.HTTPError`` on 4xx/5xx."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        with urllib.request.urlopen(req, context=self.ssl_context(user), timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else {}

    def kubeconfig_for(self, user: str, path: Path | None = None, namespace: str = "default") -> Path:
        """A kubeconfig whose only user (and current context) is ``user``."""
        ident = self.identities[user]
        path = Path(path or self.directory / f"kubeconfig-{user}")
        _write_kubeconfig(path, self.name, self.url, self.ca, {user: ident}, current=user, namespace=namespace)
        return path

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for people: the admin (current) and each of :data:`PEOPLE`, one context each."""
        people = {ADMIN: self.identities[ADMIN], **{p: self.identities[p] for p in PEOPLE}}
        return _write_kubeconfig(Path(path), self.name, self.url, self.ca, people, current=ADMIN,
                                 namespace=namespace)

    # ---- start and stop ------------------------------------------------------------------------

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "Cluster":
        if self.binary is None:
            raise ClusterError(MISSING)
        if self.snapshots and not (SNAPSHOT_CONTROLLER.is_file() and (SNAPSHOT_SHARE / "crds").is_dir()):
            raise ClusterError(MISSING_SNAPSHOTS)
        began = time.monotonic()
        try:
            self._pki()
            self._start_etcd()
            self._start_apiserver()
            if self.crds is not None:
                self._serve_crds(self.crds)
            self._start("controller-manager", self._controller_manager_args(
                CONTROLLERS if self.cronjobs else f"{CONTROLLERS},-{CRONJOB_CONTROLLER}"))
            if not self.cronjobs:  # known, not started
                self._argv[CRONJOB_CONTROLLER] = (
                    [str(self.binary), "controller-manager", *self._controller_manager_args(CRONJOB_CONTROLLER)], None)
            self._start("scheduler", self._scheduler_args())
            self._install_basics()
            if self.snapshots:
                self._start_snapshots()
            if self.with_kubelet:
                self._start_kubelet()
        except BaseException:
            self.stop()
            raise
        self.say(f"cluster {self.name}: Kubernetes {KUBE_VERSION} ready at {self.url} "
                 f"in {time.monotonic() - began:.1f}s")
        return self

    def stop(self) -> None:
        """Stop every process, newest first (the kubelet kills its pods); remove an owned directory."""
        for name in reversed(list(self._children)):
            self._children.pop(name).stop(timeout=15)
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)

    def stop_component(self, name: str) -> None:
        """Stop one component ("kubelet", "apiserver", ...) as an outage would."""
        child = self._children.pop(name, None)
        if child is not None:
            child.stop(timeout=15)

    def running(self, name: str) -> bool:
        child = self._children.get(name)
        return child is not None and child.exited() is None

    def log(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    # ---- the parts -----------------------------------------------------------------------------

    def _pki(self) -> None:
        d = self.directory / "pki"
        ca = pki.Authority(d, name=f"{self.name}-ca")
        self._serving = ca.serving("apiserver", ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
                                                 "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                                                 "10.96.0.1"])
        self._kubelet_serving = ca.serving("kubelet", ["127.0.0.1", "localhost", self.node])
        self._sa_key, self._sa_pub = pki.signing_key(d)
        users = {ADMIN: ("system:masters",),
                 "system:kube-controller-manager": (),
                 "system:kube-scheduler": (),
                 f"system:node:{self.node}": ("system:nodes",),
                 "kube-apiserver-kubelet-client": ("system:masters",),
                 **({SNAPSHOT_IDENTITY: ()} if self.snapshots else {}),
                 **PEOPLE}
        for user, groups in users.items():
            stem = user.replace(":", "-")
            pair = ca.client(stem, user, groups)
            self.identities[user] = Identity(user, pair.cert, pair.key)
        # The API server's certificate towards admission webhooks, from a CA of its own: a webhook that
        # trusts this CA alone is called by the API server and nobody else (people's certificates
        # come from the cluster CA, and must not pass).
        webhook_ca = pki.Authority(d / "webhook-client", name=f"{self.name}-webhook-client-ca")
        self._webhook_client = webhook_ca.client("apiserver", "kube-apiserver")
        (self.directory / "logs").mkdir(exist_ok=True)

    def _start(self, name: str, args: list[str], argv0: list[str] | None = None, env: dict | None = None) -> ChildServer:
        argv = (argv0 or [str(self.binary), name]) + args
        self._argv[name] = (argv, env)
        child = ChildServer(argv, log_path=self.log(name), env=env)
        self._children[name] = child
        return child

    def start_component(self, name: str) -> None:
        """Start a stopped component again as it was (same flags and port): a site coming back."""
        if self.running(name):
            return
        argv, env = self._argv[name]
        self._children[name] = ChildServer(argv, log_path=self.log(name), env=env)
        child = self._children[name]
        if name == "etcd":
            wait_for(self._etcd_healthy, STARTUP_TIMEOUT, "etcd", interval=0.1, abort=child.exited,
                     detail=child.log_tail)
        elif name == "apiserver":
            wait_for(self._ready, STARTUP_TIMEOUT, "kube-apiserver /readyz", interval=0.2,
                     abort=child.exited, detail=child.log_tail)
        elif name == "kubelet":
            wait_for(self._node_ready, STARTUP_TIMEOUT, f"node {self.node} Ready", interval=0.2,
                     abort=child.exited, detail=child.log_tail)

    COMPONENTS = ("etcd", "apiserver", "controller-manager", CRONJOB_CONTROLLER, "scheduler",
                  "snapshot-controller", "kubelet")

    def go_dark(self) -> None:
        """Every process of the site stops, kubelet first (its Pods' processes die with it): an outage."""
        self._dark = [name for name in self.COMPONENTS if self.running(name)]
        for name in reversed(self.COMPONENTS):
            self.stop_component(name)

    def come_back(self) -> None:
        """The site's processes that ran before :meth:`go_dark` start again in order on the data they
        kept, as after a power cut."""
        for name in self._dark:
            self.start_component(name)

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        data = self.directory / "etcd"
        child = self._start("etcd", [
            "--name", "default", "--data-dir", str(data), "--unsafe-no-fsync",
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
            "--log-level", "warn",
            "--quota-backend-bytes", str(2 * 1024 ** 3),
        ])
        self._etcd_url = f"http://127.0.0.1:{client}"

        wait_for(self._etcd_healthy, STARTUP_TIMEOUT, "etcd", interval=0.1, abort=child.exited,
                 detail=child.log_tail)

    def _etcd_healthy(self) -> bool:
        with urllib.request.urlopen(self._etcd_url + "/health", timeout=2) as resp:
            return json.loads(resp.read()).get("health") == "true"

    def _start_apiserver(self) -> None:
        pkid = self.directory / "pki"
        kubelet_client = self.identities["kube-apiserver-kubelet-client"]
        for attempt in range(3):  # a free port can be taken before the server binds it
            self.port = free_port()
            child = self._start("apiserver", [
                "--etcd-servers", self._etcd_url,
                "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                "--secure-port", str(self.port),
                "--cert-dir", str(pkid),
                "--tls-cert-file", str(self._serving.cert), "--tls-private-key-file", str(self._serving.key),
                "--client-ca-file", str(pkid / "ca.crt"),
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(self._sa_pub),
                "--service-account-signing-key-file", str(self._sa_key),
                "--service-cluster-ip-range", SERVICE_CIDR,
                "--authorization-mode", "Node,RBAC",
                "--allow-privileged=true",
                "--kubelet-client-certificate", str(kubelet_client.cert),
                "--kubelet-client-key", str(kubelet_client.key),
                "--kubelet-certificate-authority", str(pkid / "ca.crt"),
                "--kubelet-preferred-address-types", "InternalIP",
                "--endpoint-reconciler-type", "none",
                "--admission-control-config-file", str(self._admission_config()),
                "--audit-policy-file", str(self._audit_policy()),
                "--audit-log-path", str(self.audit_log), "--audit-log-format", "json",
                # With a watch open it would wait out the whole stop timeout before exiting on SIGTERM.
                "--shutdown-watch-termination-grace-period", "2s",
                "--v", "1",
            ])
            self._write_admin_kubeconfig()
            try:
                wait_for(self._ready, STARTUP_TIMEOUT, "kube-apiserver /readyz", interval=0.2,
                         abort=child.exited, detail=child.log_tail)
                return
            except NotReady:
                if child.exited() is None or "address already in use" not in child.log_tail(80) or attempt == 2:
                    raise
                self.stop_component("apiserver")

    @property
    def webhook_client_ca(self) -> Path:
        """The CA of the certificate the API server presents to admission webhooks (chart value
        ``webhook.clientCA``)."""
        return self.directory / "pki" / "webhook-client" / "ca.crt"

    def _admission_config(self) -> Path:
        """Webhooks get the API server's client certificate, whatever their address (user ``*``)."""
        kubeconfig = _write_kubeconfig_file(self.directory / "webhook-client.kubeconfig", {
            "apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
            "users": [{"name": "*", "user": {"client-certificate": str(self._webhook_client.cert),
                                             "client-key": str(self._webhook_client.key)}}]})
        plugin = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "WebhookAdmissionConfiguration",
                  "kubeConfigFile": str(kubeconfig)}
        path = self.directory / "admission.yaml"
        path.write_text(yaml.safe_dump({
            "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
            "plugins": [{"name": name, "configuration": plugin}
                        for name in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")]}))
        return path

    @property
    def audit_log(self) -> Path:
        return self.directory / "logs" / "audit.log"

    def _audit_policy(self) -> Path:
        """Every write is recorded (who, what, the answer's code): how tests count an operator's writes."""
        path = self.directory / "audit-policy.yaml"
        path.write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
            "rules": [*([{"level": "Metadata", "users": list(self.audit_reads_of)}] if self.audit_reads_of else []),
                      {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
                      {"level": "None"}]}))
        return path

    def requests(self, user: str | None = None, *, since: int = 0) -> list[dict]:
        """Requests the API server finished and recorded (every write; reads of ``audit_reads_of``)."""
        return self.writes(user, since=since, verbs=None)

    def writes(self, user: str | None = None, *, since: int = 0,
               verbs: frozenset | None = frozenset({"create", "update", "patch", "delete", "deletecollection"})
               ) -> list[dict]:
        """Write requests the API server finished (its audit log), optionally by one user, from line ``since``."""
        return [e for e in self._audit.events(since) if e["stage"] == "ResponseComplete"
                and (user is None or e["user"]["username"] == user) and (verbs is None or e["verb"] in verbs)]

    def watches(self, user: str, *, since: int = 0) -> list[dict]:
        """Watches ``user`` has open or had opened since line ``since`` (needs ``user`` in ``audit_reads_of``).

        A watch is recorded when its response starts, not when it ends: how a test knows an
        operator it started is listening before it writes the first object.
        """
        return [e for e in self._audit.events(since) if e["verb"] == "watch" and e["stage"] == "ResponseStarted"
                and e["user"]["username"] == user]

    def audit_position(self) -> int:
        """The audit log's current length in records, for ``writes(since=...)``."""
        return len(self._audit.events())

    def _serve_crds(self, directory: Path) -> None:
        """Create every CRD in ``directory`` and wait until each is Established."""
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        names = []
        for path in sorted(directory.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    self.request("POST", base, doc)
                    names.append(doc["metadata"]["name"])

        def established(name: str) -> bool:
            conditions = self.request("GET", f"{base}/{name}").get("status", {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        for name in names:
            wait_for(lambda n=name: established(n), 30, f"CRD {name} to be established", interval=0.1)

    def _ready(self) -> bool:
        req = urllib.request.Request(self.url + "/readyz")
        with urllib.request.urlopen(req, context=self.ssl_context(), timeout=5) as resp:
            return resp.status == 200

    def _write_admin_kubeconfig(self) -> None:
        self.write_kubeconfig(self.kubeconfig)
        for component in ("system:kube-controller-manager", "system:kube-scheduler", f"system:node:{self.node}"):
            stem = component.replace(":", "-")
            _write_kubeconfig(self.directory / f"{stem}.kubeconfig", self.name, self.url, self.ca,
                              {component: self.identities[component]}, current=component)

    def _controller_manager_args(self, controllers: str = CONTROLLERS) -> list[str]:
        pkid = self.directory / "pki"
        kubeconfig = str(self.directory / "system-kube-controller-manager.kubeconfig")
        return ["--kubeconfig", kubeconfig,
                "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
                "--secure-port", "0",
                "--leader-elect=false",
                "--controllers", controllers,
                "--use-service-account-credentials=true",
                "--service-account-private-key-file", str(self._sa_key),
                "--root-ca-file", str(pkid / "ca.crt"),
                "--cluster-signing-cert-file", str(pkid / "ca.crt"),
                "--cluster-signing-key-file", str(pkid / "ca.key"),
                "--enable-hostpath-provisioner=true",
                # A claim pre-bound to a volume can lose a status race with the volume worker and then
                # waits for the next resync (15 s by default) to bind: a second here.
                "--pvclaimbinder-sync-period=1s",
                "--service-cluster-ip-range", SERVICE_CIDR,
                "--v", "1"]

    def _scheduler_args(self) -> list[str]:
        kubeconfig = str(self.directory / "system-kube-scheduler.kubeconfig")
        return ["--kubeconfig", kubeconfig,
                "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
                "--secure-port", "0", "--leader-elect=false", "--v", "1"]

    def _install_basics(self) -> None:
        """What a cluster installer leaves: a default StorageClass (host-path provisioning)."""
        body = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": DEFAULT_STORAGE_CLASS,
                             "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "kubernetes.io/host-path", "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate"}
        self.request("POST", "/apis/storage.k8s.io/v1/storageclasses", body)

    def _start_snapshots(self) -> None:
        """The VolumeSnapshot CRDs, the snapshot-controller's upstream RBAC and the controller itself
        (as its ServiceAccount's user name, so that RBAC is what judges it), a StorageClass and a
        default VolumeSnapshotClass of the stand-in CSI driver."""
        self._serve_crds(SNAPSHOT_SHARE / "crds")
        for doc in yaml.safe_load_all((SNAPSHOT_SHARE / "rbac.yaml").read_text()):
            if doc:
                ns = (doc.get("metadata") or {}).get("namespace", "")
                self.request("POST", _RBAC_PATHS[doc["kind"]].format(ns=ns), doc)
        kubeconfig = self.directory / "snapshot-controller.kubeconfig"
        _write_kubeconfig(kubeconfig, self.name, self.url, self.ca,
                          {SNAPSHOT_IDENTITY: self.identities[SNAPSHOT_IDENTITY]}, current=SNAPSHOT_IDENTITY)
        self._start("snapshot-controller", ["--kubeconfig", str(kubeconfig), "--leader-election=false", "--v=2"],
                    argv0=[str(SNAPSHOT_CONTROLLER)])
        self.request("POST", "/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": CSI_STORAGE_CLASS},
            "provisioner": CSI_DRIVER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})
        self.request("POST", "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses", {
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": SNAPSHOT_CLASS,
                         "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
            "driver": CSI_DRIVER, "deletionPolicy": "Delete"})

    def _start_kubelet(self) -> None:
        kubeconfig = self.directory / f"system-node-{self.node}.kubeconfig"
        port = free_port()
        args = ["--kubeconfig", str(kubeconfig), "--node", self.node, "--port", str(port),
                "--root", str(self.directory / "kubelet"),
                "--tls-cert", str(self._kubelet_serving.cert), "--tls-key", str(self._kubelet_serving.key),
                "--client-ca", str(self.ca), *self.kubelet_args]
        child = self._start("kubelet", args, argv0=[sys.executable, "-m", "lifeline.devstack.process_kubelet"],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

        wait_for(self._node_ready, STARTUP_TIMEOUT, f"node {self.node} Ready", interval=0.2,
                 abort=child.exited, detail=child.log_tail)

    def _node_ready(self) -> bool:
        node = self.request("GET", f"/api/v1/nodes/{self.node}")
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in (node.get("status") or {}).get("conditions") or [])
        tainted = any(t.get("key") == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints") or [])
        return ready and not tainted


def _write_kubeconfig(path: Path, cluster: str, url: str, ca: Path, users: dict[str, Identity], *,
                      current: str, namespace: str = "default") -> Path:
    """A kubeconfig with one context per user, named after the user; certificates by path."""
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster, "cluster": {"server": url, "certificate-authority": str(ca)}}],
        "users": [{"name": u, "user": {"client-certificate": str(i.cert), "client-key": str(i.key)}}
                  for u, i in users.items()],
        "contexts": [{"name": u, "context": {"cluster": cluster, "user": u, "namespace": namespace}}
                     for u in users],
        "current-context": current,
    }
    return _write_kubeconfig_file(path, config)


def _write_kubeconfig_file(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


__all__ = ["ADMIN", "Cluster", "ClusterError", "KUBE_VERSION", "MISSING", "PEOPLE", "kube_binary"]
