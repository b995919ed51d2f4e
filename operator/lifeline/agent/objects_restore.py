"""A resources backup's tree put back through the API server: ``lifeline agent objects-restore DIR``.

The tree is what :mod:`lifeline.agent.objects` wrote and ``lifeline agent restore`` gives back:
``<resource>[.<group>]/<name>.json``, one object a file, with its ``apiVersion`` and ``kind``. Its
restore has two halves:

Planning (pure, :func:`prepared`): every document is read, its namespaces mapped
(:func:`mapped`), what must not be replayed dropped (:func:`scrubbed`), and the objects put in an
order in which what one needs comes before it (:func:`ordered`): CustomResourceDefinitions,
Namespaces, ServiceAccounts, LimitRanges and ResourceQuotas, Roles, RoleBindings, ConfigMaps and
Secrets, PersistentVolumeClaims, workloads, Services and Ingresses, then everything else (custom
resources included).

- Namespaces rewritten by ``--namespace-map FROM=TO``: ``metadata.namespace``; a Namespace's own
  name; RoleBinding and ClusterRoleBinding subjects (a subject's ``namespace``, and the service
  account names ``system:serviceaccount:FROM:<name>`` and ``system:serviceaccounts:FROM``); a
  claim's ``spec.dataSourceRef.namespace``. Not rewritten: namespaces inside strings (DNS names
  such as ``db.FROM.svc``, environment values, ConfigMap data, annotations such as kubectl's
  last-applied-configuration), a pod's (anti-)affinity ``namespaces`` and ``namespaceSelector``,
  NetworkPolicy namespace selectors, and any field of a custom resource.
- Dropped: what the server sets (``uid``, ``resourceVersion``, ``managedFields``, ...) and
  ``metadata.ownerReferences`` (the owners' uids are the old cluster's); what the target
  allocates itself (:func:`allocated`): a Service's ``clusterIP``/``clusterIPs`` (a headless
  Service keeps ``None``) and ``healthCheckNodePort``, a claim's ``volumeName`` and its binding
  annotations (the claim binds anew: its data comes back from the volume's own backups), a Pod's
  ``nodeName``, a Job's generated selector and ``controller-uid`` labels. Kept: ``nodePort``s
  (a clash with a port in use is the server's to report). Pods, ReplicaSets and Jobs a controller
  owns were never written: their owners make them again.

Applying (:func:`restore_objects`), with the caller's credentials: the cluster's discovery
(``GET /api/v1``, ``/apis/<group>/<version>``) gives each kind's plural and scope, so an
``apiVersion`` the target does not serve is that object's failure, not a guess. First a
server-side dry run of every object (``?dryRun=All``: admission, validation and quota as for a
real write); an object that exists already is skipped (``existing="skip"``) or dry-run replaced
at its live resourceVersion (``existing="update"``; what the target allocated, and its owner
references, are carried over from the live object). If any object fails, nothing is written and
every failure is reported with the API server's words; otherwise the objects are written in
order. Nothing that exists is ever deleted. A dry run cannot see an object that another of the
same run would make first (a namespace, a CRD): such objects fail the check with a hint to
restore those first.

Only the applier talks to the API server, through :class:`Api`; the Kubernetes client is imported
when it connects, so ``python -m lifeline.agent`` stays fast. :func:`connect` and :class:`Api` are
the agent's one way to the API server (a resources backup's writer uses them too): the agent may
not import :mod:`lifeline.kube`, the operator's door, and needs only its caller's credentials.
"""
from __future__ import annotations

import copy
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from lifeline.errors import LifelineError, UsageError

SERVER_SET = ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation", "selfLink",
              "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences")
RBAC = "rbac.authorization.k8s.io"
BINDINGS = {(RBAC, "RoleBinding"), (RBAC, "ClusterRoleBinding")}
# The order of the writes: what an object needs comes in an earlier step; the rest after the last.
STEPS: tuple[frozenset[tuple[str, str]], ...] = tuple(frozenset(step) for step in (
    {("apiextensions.k8s.io", "CustomResourceDefinition")},
    {("", "Namespace")},
    {("", "ServiceAccount"), ("", "LimitRange"), ("", "ResourceQuota")},
    {(RBAC, "ClusterRole"), (RBAC, "Role")},
    BINDINGS,
    {("", "ConfigMap"), ("", "Secret")},
    {("", "PersistentVolumeClaim")},
    {("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("apps", "ReplicaSet"),
     ("batch", "CronJob"), ("batch", "Job"), ("", "Pod")},
    {("", "Service"), ("networking.k8s.io", "Ingress")},
))
CLAIM_BINDING = ("pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
                 "volume.kubernetes.io/selected-node", "volume.kubernetes.io/storage-provisioner",
                 "volume.beta.kubernetes.io/storage-provisioner")
JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
EXISTING = ("skip", "update")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a namespace's name (RFC 1123 label)
_API_VERSION = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[a-z0-9]+$")  # v1, apps/v1, his.example.org/v1beta1
SA_USER, SA_GROUP = "system:serviceaccount:", "system:serviceaccounts:"
WORKERS = 8  # checks and writes at once: the API server answers many clients at a time


class Refused(LifelineError):
    """The API server answered a call with an error status; ``message`` is its own."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Document:
    """One object of the tree: the file it came from (relative to the tree) and its body."""

    file: str
    body: dict

    @property
    def group_kind(self) -> tuple[str, str]:
        return group_kind(self.body)

    @property
    def api_version(self) -> str:
        return self.body["apiVersion"]

    @property
    def kind(self) -> str:
        return self.body["kind"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def namespace(self) -> str | None:
        return self.body["metadata"].get("namespace") or None


def group_kind(body: dict) -> tuple[str, str]:
    """``("apps", "Deployment")``; ``("", "Service")`` for the core group."""
    return str(body.get("apiVersion") or "").rpartition("/")[0], str(body.get("kind") or "")


# --- reading and planning (no API calls) ------------------------------------------------------

def _path_segment_problem(what: str, value) -> str | None:
    """Why ``value`` cannot be a name in an API path (the API server's own rule), or None."""
    if not isinstance(value, str) or not value:
        return f"{what} is missing"
    if value in (".", "..") or "/" in value or "%" in value:
        return f"{what} {value!r} cannot be an object's name"
    return None


def document_problem(body) -> str | None:
    """Why a file's content is not an object to restore, or None."""
    if not isinstance(body, dict):
        return "not a JSON object"
    for key in ("apiVersion", "kind"):
        if not isinstance(body.get(key), str) or not body[key]:
            return f"{key} is missing"
    if not _API_VERSION.match(body["apiVersion"]):
        return f"apiVersion {body['apiVersion']!r} is not a group/version"
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return "metadata is missing"
    if (problem := _path_segment_problem("metadata.name", meta.get("name"))) is not None:
        return problem
    if meta.get("namespace") is not None:
        return _path_segment_problem("metadata.namespace", meta["namespace"])
    return None


def read_tree(root: Path) -> list[Document]:
    """Every ``*.json`` document under ``root``; a usage error naming each file that is not an object."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory (restore the point first: lifeline agent restore POINT --to DIR)")
    docs, bad = [], []
    for path in sorted(root.rglob("*.json")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(root))
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            bad.append(f"{rel}: not JSON ({exc})")
            continue
        if (problem := document_problem(body)) is not None:
            bad.append(f"{rel}: {problem}")
        else:
            docs.append(Document(rel, body))
    if bad:
        raise UsageError(f"{len(bad)} file(s) under {root} are not objects to restore: " + "; ".join(bad))
    if not docs:
        raise UsageError(f"no *.json documents under {root}")
    return docs


def namespace_pair(text: str) -> tuple[str, str]:
    """``FROM=TO`` of ``--namespace-map``, both namespace names."""
    old, sep, new = text.partition("=")
    if not sep or not _LABEL.match(old) or not _LABEL.match(new):
        raise UsageError(f"{text!r} is not FROM=TO with two namespace names")
    return old, new


def namespace_map(pairs: Iterable[str | tuple[str, str]]) -> dict[str, str]:
    """The ``--namespace-map`` options as one mapping; a namespace mapped twice is a usage error."""
    out: dict[str, str] = {}
    for pair in pairs:
        old, new = namespace_pair(pair) if isinstance(pair, str) else pair
        if out.get(old, new) != new:
            raise UsageError(f"namespace {old} is mapped twice ({out[old]} and {new})")
        out[old] = new
    return out


def _subject_mapped(subject: dict, mapping: dict[str, str]) -> dict:
    out = dict(subject)
    if out.get("namespace") in mapping:
        out["namespace"] = mapping[out["namespace"]]
    name = out.get("name")
    if isinstance(name, str):
        for prefix, sep in ((SA_USER, ":"), (SA_GROUP, "")):
            if out.get("kind") == ("User" if sep else "Group") and name.startswith(prefix):
                ns, colon, rest = name[len(prefix):].partition(":") if sep else (name[len(prefix):], "", "")
                if ns in mapping:
                    out["name"] = f"{prefix}{mapping[ns]}{colon}{rest}"
    return out


def mapped(body: dict, mapping: dict[str, str]) -> dict:
    """A copy of ``body`` with its namespaces mapped (the module's docstring lists which fields)."""
    out = copy.deepcopy(body)
    if not mapping:
        return out
    meta = out.setdefault("metadata", {})
    gk = group_kind(out)
    if meta.get("namespace") in mapping:
        meta["namespace"] = mapping[meta["namespace"]]
    if gk == ("", "Namespace") and meta.get("name") in mapping:
        meta["name"] = mapping[meta["name"]]
    if gk in BINDINGS and isinstance(out.get("subjects"), list):
        out["subjects"] = [_subject_mapped(s, mapping) if isinstance(s, dict) else s for s in out["subjects"]]
    source = (out.get("spec") or {}).get("dataSourceRef") if gk == ("", "PersistentVolumeClaim") else None
    if isinstance(source, dict) and source.get("namespace") in mapping:
        source["namespace"] = mapping[source["namespace"]]
    return out


def allocated(body: dict) -> list[tuple[str, ...]]:
    """The fields of ``body`` the target cluster allocates itself: left out of a create, and taken
    from the live object on an update (a replace without them would change or refuse them)."""
    gk, spec = group_kind(body), body.get("spec") or {}
    if gk == ("", "Service"):
        ips = [] if spec.get("clusterIP") == "None" else [("spec", "clusterIP"), ("spec", "clusterIPs")]
        return [*ips, ("spec", "healthCheckNodePort")]
    if gk == ("", "PersistentVolumeClaim"):
        return [("spec", "volumeName"), *(("metadata", "annotations", a) for a in CLAIM_BINDING)]
    if gk == ("", "Pod"):
        return [("spec", "nodeName")]
    if gk == ("batch", "Job"):
        labels = [(*at, "labels", label) for at in (("metadata",), ("spec", "template", "metadata"))
                  for label in JOB_UID_LABELS]
        return labels + ([] if spec.get("manualSelector") else [("spec", "selector")])
    return []


def _get(body: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(body, dict) or key not in body:
            return None
        body = body[key]
    return body


def _pop(body: dict, path: tuple[str, ...]) -> None:
    parent = _get(body, path[:-1]) if len(path) > 1 else body
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def scrubbed(body: dict) -> dict:
    """A copy of ``body`` without what must not be replayed: what the server set, owner references,
    and what the target allocates (:func:`allocated`)."""
    out = copy.deepcopy(body)
    meta = out.setdefault("metadata", {})
    for key in SERVER_SET:
        meta.pop(key, None)
    for path in allocated(out):
        _pop(out, path)
    return out


def carried_over(body: dict, live: dict) -> dict:
    """``body`` as a replace of ``live``: at its resourceVersion, with what the target allocated and
    the live owner references kept."""
    out = copy.deepcopy(body)
    for path in [*allocated(out), ("metadata", "ownerReferences")]:
        value = _get(live, path)
        if value is not None:
            parent = out
            for key in path[:-1]:
                parent = parent.setdefault(key, {})
            parent[path[-1]] = copy.deepcopy(value)
    out["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    return out


def step(body: dict) -> int:
    """Which step of :data:`STEPS` writes ``body`` (everything else: after the last)."""
    gk = group_kind(body)
    return next((i for i, kinds in enumerate(STEPS) if gk in kinds), len(STEPS))


def ordered(docs: Iterable[Document]) -> list[Document]:
    """The documents in the order of their writes; within a step by group, kind, namespace, name."""
    return sorted(docs, key=lambda d: (step(d.body), *d.group_kind, d.namespace or "", d.name, d.file))


def prepared(docs: Iterable[Document], mapping: dict[str, str] | None = None) -> list[Document]:
    """The tree's documents as they will be written: mapped, scrubbed and ordered."""
    return ordered(Document(d.file, scrubbed(mapped(d.body, mapping or {}))) for d in docs)


# --- discovery ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Served:
    """A kind at one apiVersion, as the cluster's discovery lists it."""

    plural: str
    namespaced: bool
    verbs: frozenset[str]


def served_kinds(listing: dict) -> dict[str, Served]:
    """Kind -> how it is served, from an ``APIResourceList`` (subresources left out)."""
    return {r["kind"]: Served(r["name"], bool(r.get("namespaced")), frozenset(r.get("verbs") or ()))
            for r in listing.get("resources") or () if "/" not in r.get("name", "/")}


def group_path(api_version: str) -> str:
    return f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"


def collection_path(api_version: str, served: Served, namespace: str | None) -> str:
    where = f"/namespaces/{namespace}" if served.namespaced else ""
    return f"{group_path(api_version)}{where}/{served.plural}"


# --- applying ----------------------------------------------------------------------------------

class Api:
    """The calls an objects restore makes, through the Kubernetes client's ``ApiClient``."""

    def __init__(self, client, api_exception: type, unreachable: tuple[type, ...]):
        self.client, self._api_exception, self._unreachable = client, api_exception, unreachable

    def call(self, method: str, path: str, body: dict | None = None, *, dry_run: bool = False) -> dict:
        """One call; :class:`Refused` with the server's message on an error status."""
        try:
            response = self.client.call_api(
                path + ("?dryRun=All" if dry_run else ""), method, body=body,
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                auth_settings=["BearerToken"], _return_http_data_only=True, _preload_content=False,
                _request_timeout=(5, 60))
        except self._api_exception as exc:
            raise Refused(exc.status or 0, server_message(exc.body, exc.reason)) from None
        except self._unreachable as exc:
            raise LifelineError(f"cannot reach the API server: {exc}") from None
        return json.loads(response.data or b"{}")


def server_message(body, fallback) -> str:
    """The ``message`` of a ``Status`` the API server answered with (else ``fallback``)."""
    try:
        return json.loads(body or "{}").get("message") or str(fallback)
    except (ValueError, AttributeError):
        return str(fallback)


def connect(kubeconfig: str | None = None) -> Api:
    """The caller's credentials: ``kubeconfig``, else in-cluster (in a pod without ``KUBECONFIG``),
    else ``KUBECONFIG`` or ``~/.kube/config``."""
    import kubernetes  # lazy: the Kubernetes client takes seconds to import; only talking to the API needs it
    import urllib3  # lazy: with the Kubernetes client, whose transport it is

    config = kubernetes.client.Configuration()
    try:
        if kubeconfig:
            kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=config)
        elif os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            kubernetes.config.load_incluster_config(client_configuration=config)
        else:
            kubernetes.config.load_kube_config(client_configuration=config)
    except (kubernetes.config.ConfigException, OSError) as exc:
        where = f" in {kubeconfig}" if kubeconfig else ""
        raise UsageError(f"no credentials for the API server{where}: {exc}") from None
    return Api(kubernetes.client.ApiClient(config), kubernetes.client.ApiException,
               (OSError, urllib3.exceptions.HTTPError))


@dataclass
class Outcome:
    """What became of one object: ``created``, ``updated``, ``skipped`` or ``failed``; ``would create``
    and ``would update`` when it passed the server's check but nothing was written."""

    kind: str
    api_version: str
    namespace: str | None
    name: str
    file: str
    outcome: str = ""
    message: str = ""

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def as_dict(self) -> dict:
        d = asdict(self)
        d["apiVersion"] = d.pop("api_version")
        return d


AfterStep = Callable[[list[Outcome]], "str | None"]


@dataclass
class _Write:
    outcome: Outcome
    method: str
    path: str
    body: dict = field(repr=False)


class _Discovery:
    """The cluster's discovery, one call per apiVersion the tree names."""

    def __init__(self, api: Api):
        self.api, self._seen = api, {}

    def kinds(self, api_version: str) -> dict[str, Served] | str:
        if api_version not in self._seen:
            try:
                self._seen[api_version] = served_kinds(self.api.call("GET", group_path(api_version)))
            except Refused as exc:
                self._seen[api_version] = (f"not served: the cluster does not serve {api_version}"
                                           if exc.status == 404 else
                                           f"discovery of {api_version} failed: {exc.message} (HTTP {exc.status})")
        return self._seen[api_version]


def _hint(doc: Document, docs: list[Document], refused: Refused | None) -> str:
    """What in the same tree a failed object waits for (a dry run cannot see it made first)."""
    group, _, version = doc.api_version.rpartition("/")
    for other in docs:
        spec = other.body.get("spec") or {}
        if refused is None and other.group_kind == ("apiextensions.k8s.io", "CustomResourceDefinition") and \
                spec.get("group") == group and (spec.get("names") or {}).get("kind") == doc.kind:
            return (f" (its CustomResourceDefinition {other.name} is in this tree: restore the folder "
                    f"{Path(other.file).parent} on its own first)")
        if refused is not None and refused.status == 404 and other.group_kind == ("", "Namespace") \
                and other.name == doc.namespace:
            return (f" (namespace {doc.namespace} is in this tree: restore the folder {Path(other.file).parent} "
                    "on its own first)")
    return ""


def _check(api: Api, doc: Document, served: Served, existing: str, out: Outcome) -> _Write | str | None:
    """The server's dry run of one object: the write to make, why it fails, or None (exists, skipped)."""
    collection = collection_path(doc.api_version, served, doc.namespace)
    item = f"{collection}/{doc.name}"
    try:
        live = api.call("GET", item)
    except Refused as exc:
        if exc.status != 404:
            return f"{exc.message} (HTTP {exc.status})"
        live = None
    if live is None:
        write = _Write(out, "POST", collection, doc.body)
    elif existing == "skip":
        return None
    else:
        write = _Write(out, "PUT", item, carried_over(doc.body, live))
    api.call(write.method, write.path, write.body, dry_run=True)
    return write


def restore_objects(docs: list[Document], api: Api, *, existing: str = "skip", dry_run: bool = False,
                    workers: int = WORKERS, after_step: AfterStep | None = None,
                    leave: Callable[[Document, "Served"], str | None] | None = None) -> list[Outcome]:
    """Check every prepared document with the server's dry run, then (unless ``dry_run`` or one
    failed) write them in order; one :class:`Outcome` per document, in that order. ``leave(doc,
    served)`` may name a reason to leave a document alone (its outcome ``skipped``, nothing asked).

    The checks are independent, so ``workers`` of them run at once; the writes go step by step
    (:data:`STEPS`: what an object needs is written in an earlier step), the objects of one step at
    once, and a step that fails stops the ones after it. ``after_step(outcomes)`` is called with the
    outcomes of each step once it is written; a sentence it returns stops the steps after it, as a
    failed write does (a restore gives claims their data there, before the workloads)."""
    if existing not in EXISTING:
        raise UsageError(f"existing must be one of {', '.join(EXISTING)}, not {existing!r}")
    discovery, outcomes, to_check, seen = _Discovery(api), [], [], {}
    for doc in docs:
        out = Outcome(doc.kind, doc.api_version, doc.namespace, doc.name, doc.file)
        outcomes.append(out)
        kinds = discovery.kinds(doc.api_version)
        served = kinds.get(doc.kind) if isinstance(kinds, dict) else None
        key = (doc.group_kind, doc.namespace if served and served.namespaced else None, doc.name)
        if isinstance(kinds, str):
            out.outcome, out.message = "failed", kinds + _hint(doc, docs, None)
        elif served is None:
            out.outcome, out.message = "failed", f"not served: {doc.api_version} has no kind {doc.kind} on this cluster"
        elif served.namespaced and not doc.namespace:
            out.outcome, out.message = "failed", "a namespaced object without metadata.namespace"
        elif leave is not None and (why := leave(doc, served)):
            out.outcome, out.message = "skipped", why
        elif key in seen:
            out.outcome, out.message = "failed", f"the tree holds this object twice ({seen[key]}, {doc.file})"
        else:
            seen[key] = doc.file
            to_check.append((doc, served, out))

    def check(item) -> _Write | None:
        doc, served, out = item
        try:
            write = _check(api, doc, served, existing, out)
        except Refused as exc:
            out.outcome, out.message = "failed", exc.message + _hint(doc, docs, exc)
            return None
        if isinstance(write, str):
            out.outcome, out.message = "failed", write
        elif write is None:
            out.outcome, out.message = "skipped", "exists, skipped"
        else:
            out.outcome = "would create" if write.method == "POST" else "would update"
            return write
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        writes = [w for w in pool.map(check, to_check) if w is not None]
        failed = sum(o.outcome == "failed" for o in outcomes)
        if failed or dry_run:
            why = (f"not written: {failed} object(s) failed the server's check" if failed
                   else "dry run: the server accepted it")
            for w in writes:
                w.outcome.message = why
            return outcomes
        _write_in_steps(api, writes, pool, after_step)
    return outcomes


def _write_in_steps(api: Api, writes: list[_Write], pool: ThreadPoolExecutor, after_step: AfterStep | None) -> None:
    def write(w: _Write) -> None:
        try:
            api.call(w.method, w.path, w.body)
        except Refused as exc:
            w.outcome.outcome, w.outcome.message = "failed", exc.message
            return
        w.outcome.outcome = "created" if w.method == "POST" else "updated"

    by_step: dict[int, list[_Write]] = {}
    for w in writes:
        by_step.setdefault(step(w.body), []).append(w)
    stopped = None
    for number in sorted(by_step):
        if stopped is not None:
            for w in by_step[number]:
                w.outcome.outcome, w.outcome.message = "failed", f"not written: {stopped}"
            continue
        list(pool.map(write, by_step[number]))
        failure = next((w.outcome for w in by_step[number] if w.outcome.outcome == "failed"), None)
        if failure is not None:
            stopped = f"the write of {failure.kind} {failure.where} failed"
        elif after_step is not None:
            stopped = after_step([w.outcome for w in by_step[number]])


def outcome_table(outcomes: list[Outcome]) -> str:
    """KIND, NAME (namespace/name), OUTCOME, MESSAGE: aligned as kubectl aligns its columns."""
    rows = [("KIND", "NAME", "OUTCOME", "MESSAGE")] + [(o.kind, o.where, o.outcome, o.message) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("   ".join([*(v.ljust(w) for v, w in zip(r, widths)), r[3]]).rstrip() for r in rows)
