"""Resources policies: what the API server serves, and the account their backup Jobs read objects as.

Discovery (:meth:`lifeline.kube.Kube.discover`, which keeps an answer five minutes) is asked only
while some policy backs up objects; when it changes, the controller's facts change, and
every resources policy is planned again (a kind gone leaves its Role; a new CRD's kind is named, and
read once someone who may read it applies the policy again, below). The reader's ServiceAccount, Role and RoleBinding (:mod:`lifeline.planning.objects_reader`)
are created when missing, replaced when their spec hash differs, and deleted when the policy stops
being a resources policy; a policy's deletion takes them with it (owner references).

Each policy sees discovery through its record of the kinds its author was checked for (:meth:`view`:
the admission webhook's annotations, counted only when the webhook's seal holds): its Role, its backup
Jobs' list of kinds and its ``SourceAvailable`` all come from that view, so a kind served after the
policy was written is named there (and in an Event), never read, until someone who may read it
applies the policy again.
"""
from __future__ import annotations

import dataclasses

from lifeline.clock import rfc3339
from lifeline.kube import ROLEBINDINGS, ROLES, SERVICEACCOUNTS, KubeError, ObjectRef
from lifeline.labels import ANN_SPEC_HASH
from lifeline.planning import backup, objects_reader
from lifeline.sources.resources import not_checked_message, selection, withheld
from lifeline.webhooks.seal_key import seal_key

from .common import write_owned

RESOURCES = {"ServiceAccount": SERVICEACCOUNTS, "Role": ROLES, "RoleBinding": ROLEBINDINGS}
# What a reader must be allowed, cluster-wide, to back up the namespace's cluster-scoped dependencies:
# what the chart's ClusterRole lifeline-objects-cluster-reader grants, which only the admin binds.
CLUSTER_READS = (("apiextensions.k8s.io", "customresourcedefinitions"), ("storage.k8s.io", "storageclasses"),
                 ("", "persistentvolumes"))


def backs_up_objects(body: dict) -> bool:
    """Whether a policy (as stored, perhaps invalid) names a resources source."""
    return isinstance(((body.get("spec") or {}).get("source") or {}).get("resources"), dict)


class ObjectReaders:
    """One BackupPolicy controller's reader accounts, and the discovery its plans follow."""

    def __init__(self, controller):
        self.ctl = controller
        self.kube = controller.kube
        self._applied: dict[tuple, str] = {}  # (namespace, name, kind) -> spec hash written by this process
        self._cluster_allowed: dict[tuple, int] = {}  # (namespace, name, uid) -> the generation found allowed
        self._views: tuple[tuple, dict] = ((), {})  # (the discovery answer, {checked kinds: its view})
        self._told: dict[tuple, str] = {}  # (namespace, name, uid) -> the kinds not checked, as last told

    # ---- each policy's view of discovery ----------------------------------------------------------

    def checked(self, body: dict) -> str | None:
        """The kinds the policy's author was checked for, when the webhook's seal holds (else None)."""
        return objects_reader.checked(body, seal_key(self.ctl.ctx.options))

    def view(self, body: dict) -> tuple:
        """What the API server serves, as this policy may read it (:func:`objects_reader.view`)."""
        served = self.ctl.facts.served
        if self._views[0] is not served:
            self._views = (served, {})
        views, record = self._views[1], self.checked(body)
        if record not in views:
            if len(views) > 1000:
                views.clear()
            views[record] = objects_reader.view(served, record)
        return views[record]

    def facts(self, body: dict) -> backup.Facts:
        """The controller's facts for planning this policy: a resources policy's with its own view."""
        if not backs_up_objects(body):
            return self.ctl.facts
        return dataclasses.replace(self.ctl.facts, served=self.view(body))

    async def refresh(self) -> str | None:
        """The controller's facts follow discovery (kept by :meth:`Kube.discover`); the error text when it failed."""
        try:
            served = await self.kube.discover()
        except KubeError as exc:
            return f"could not read what the API server serves: {exc}"
        if served is not self.ctl.facts.served:  # a new answer (an unchanged one plans the same)
            self.ctl.facts = dataclasses.replace(self.ctl.facts, served=served)
        return None

    async def cluster_refused(self, body: dict) -> str | None:
        """Why the policy may not back up cluster-scoped objects it asks for (None: it does not ask, or the
        admin bound lifeline-objects-cluster-reader to its reader). Asked once a generation when allowed:
        a binding taken away later fails the backup Job itself, with the API server's words."""
        meta = body["metadata"]
        src = ((body.get("spec") or {}).get("source") or {}).get("resources") or {}
        if not isinstance(src, dict) or not src.get("clusterDependencies"):
            return None
        key = (meta.get("namespace", ""), meta["name"], meta.get("uid", ""))
        if self._cluster_allowed.get(key) == meta.get("generation"):
            return None
        reader = objects_reader.reader_name(meta["name"])
        user = f"system:serviceaccount:{key[0]}:{reader}"
        try:
            missing = [f"{resource}{'.' + group if group else ''}" for group, resource in CLUSTER_READS
                       if not await self.kube.access_review(user=user, groups=[], namespace="", verb="get",
                                                             group=group, resource=resource)]
        except KubeError as exc:
            return f"could not ask whether {reader} may read cluster-scoped objects: {exc}"
        if missing:
            return (f"clusterDependencies asks for cluster-scoped objects, which only the admin allows: {reader} may "
                    f"not get {', '.join(missing)}. The admin allows it with `kubectl create clusterrolebinding "
                    f"{key[0]}-{meta['name']}-cluster --clusterrole lifeline-objects-cluster-reader --serviceaccount "
                    f"{key[0]}:{reader}`; or leave clusterDependencies out")
        self._cluster_allowed[key] = meta.get("generation")
        return None

    async def apply(self, body: dict) -> str | None:
        """The reader's three objects as planned (none for other sources); the error text, if any."""
        meta = body["metadata"]
        namespace, uid = meta.get("namespace", ""), meta.get("uid", "")
        view = self.view(body)
        desired = objects_reader.plan(body, view)
        if desired:
            await self._tell_withheld(body, view)
        name = objects_reader.reader_name(meta["name"])
        if not desired and not any(k[:2] == (namespace, name) for k in self._applied):
            return None
        errors: list[str] = []
        wanted = {m["kind"]: m for m in desired}
        for kind, res in RESOURCES.items():
            key, manifest = (namespace, name, kind), wanted.get(kind)
            digest = manifest["metadata"]["annotations"][ANN_SPEC_HASH] if manifest else None
            if manifest is not None and self._applied.get(key) == digest:
                continue
            try:
                current = await self.kube.get(res, namespace, name, missing_ok=True)
            except KubeError as exc:
                errors.append(f"{kind} {name}: {exc}")
                break
            owned = current is not None and uid in [r.get("uid") for r in current["metadata"].get("ownerReferences") or ()]
            if manifest is None:
                if owned:
                    try:
                        await self.kube.delete(res, namespace, name, missing_ok=True)
                    except KubeError as exc:
                        errors.append(f"{kind} {name}: {exc}")
                self._applied.pop(key, None)
                continue
            if current is not None and not owned:
                # stop here: a RoleBinding must never name a Role, nor a Job an account, that is not ours
                errors.append(f"a {kind} named {name} already exists and does not belong to this policy: rename or "
                              "delete it")
                break
            if current is not None and (current["metadata"].get("annotations") or {}).get(ANN_SPEC_HASH) == digest:
                self._applied[key] = digest
                continue
            fact = None if current is None else {"resourceVersion": current["metadata"]["resourceVersion"]}
            written, _ = await write_owned(self.kube, res, namespace, manifest, fact, uid, errors)
            if not written:
                break  # the RoleBinding waits until the account and the Role are this policy's, as planned
            self._applied[key] = digest
        return "; ".join(errors) or None

    async def _tell_withheld(self, body: dict, view: tuple) -> None:
        """An Event naming the kinds selected now that the author was not checked for, once each time they
        change, while others are backed up (none backed up: ``SourceAvailable`` turns False, and that
        change makes its own Event). Told already when the status says it (after a restart)."""
        try:
            src = backup.parse_spec(body).source.resources
        except Exception:  # noqa: BLE001 - an invalid spec plans no reader: the Ready condition says why
            return
        left_out = withheld(src, view)
        if not left_out or not selection(src, view)[0]:
            return
        message = not_checked_message(left_out, body["metadata"]["name"])
        conditions = (body.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "SourceAvailable" and message in (c.get("message") or "") for c in conditions):
            return
        meta = body["metadata"]
        key = (meta.get("namespace", ""), meta["name"], meta.get("uid", ""))
        if self._told.get(key) == message:
            return
        self._told[key] = message
        await self.kube.emit_event(ObjectRef.of(body), "Warning", "KindsNotChecked", message,
                                   rfc3339(self.ctl.ctx.clock.now()))
