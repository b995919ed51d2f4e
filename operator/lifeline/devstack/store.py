"""The API server's rules for stored objects, on top of kmock's object store.

What a create, an update or a delete does to the stored state, whoever asked for it:
uids and timestamps, the global resourceVersion and the log of changes watchers are
fed from, optimistic concurrency, generation, the status subresource, finalizers,
and the controllers that run right after a write (garbage collection, namespace
termination, serving a CRD's resource). :class:`ObjectStore` answers no HTTP itself:
:class:`~lifeline.devstack.emulator.HonestEmulator` puts the API in front of it.
"""
from __future__ import annotations

import asyncio
import copy
import json
import re
import secrets
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import attrs
import kmock

from lifeline.clock import Clock, SystemClock, rfc3339
from lifeline.devstack.api_errors import already_exists, bad_request, conflict, invalid, namespace_terminating, not_found
from lifeline.devstack.crds import crd_status, served_resources
from lifeline.devstack.resources import CRDS, NAMESPACES, api_version_of, kind_of, meta_of

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's: no vowels, no lookalikes


@dataclass(frozen=True)
class Change:
    """One stored change, as every watcher of its resource sees it."""

    rv: int
    resource: kmock.resource
    namespace: str | None
    type: str  # ADDED, MODIFIED, DELETED
    object: dict
    old: dict | None


def _spec_part(obj: Mapping[str, Any]) -> dict:
    """What ``generation`` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


def _kind_of(res) -> tuple:
    """(group, version, plural): what kmock.resource equality compares, usable as a dict key."""
    if isinstance(res, str):
        res = kmock.resource(res)
    return (res.group, res.version, res.plural)


@attrs.define(kw_only=True)
class ObjectStore(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's rules for what a write stores.

    The knobs (``clock``, ``history_limit``, ``garbage_collection``, ``require_namespaces``)
    are described on :class:`~lifeline.devstack.emulator.HonestEmulator`, the class to use.
    """

    clock: Clock = attrs.field(factory=SystemClock)
    history_limit: int = 100_000
    garbage_collection: bool = True
    require_namespaces: bool = False

    _rv: int = attrs.field(default=0, init=False)
    _changes: list[Change] = attrs.field(factory=list, init=False)
    _forgotten_rv: int = attrs.field(default=0, init=False)  # changes up to this rv are dropped
    _wakeup: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _custom: set[kmock.resource] = attrs.field(factory=set, init=False)  # resources served for a CRD
    _crd_served: dict[str, set[kmock.resource]] = attrs.field(factory=dict, init=False)
    _columns: dict[kmock.resource, list[dict]] = attrs.field(factory=dict, init=False)  # printer columns
    # keys ever stored, by (group, version, plural): reading one kind must not walk every object
    # (webhook configurations are looked up on each write; thousands of objects made that quadratic)
    _keys_by_kind: dict[tuple, dict[tuple, None]] = attrs.field(factory=dict, init=False)

    # ---- reading the stored state

    def _live(self, key: tuple) -> dict | None:
        if key not in self._objects:
            return None
        obj = self._objects[key]
        return None if obj.deleted else obj.last.raw

    def _objects_of(self, res: kmock.resource | None = None) -> Iterator[tuple[tuple, dict]]:
        if res is None:
            keys = list(self._objects)
        else:
            keys = list(self._keys_by_kind.get(_kind_of(res), ()))
        for key in keys:
            obj = self._objects[key]
            if not obj.deleted:
                yield key, obj.last.raw

    def _now(self) -> str:
        return rfc3339(self.clock.now())

    # ---- storing: every change goes through _commit, which is what watchers see

    def _commit(self, key: tuple, type_: str, new: dict, old: dict | None) -> dict:
        self._rv += 1
        new = copy.deepcopy(new)
        new.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        if type_ == "DELETED":
            self._objects[key].delete()
        elif key in self._objects:
            if self._objects[key].deleted:
                self._objects[key].create(new)
            else:
                self._objects[key].history.append(new)
        else:
            self._objects[key] = new
            self._keys_by_kind.setdefault(_kind_of(key[0]), {})[key] = None
        self._changes.append(Change(self._rv, key[0], key[1], type_, copy.deepcopy(new), copy.deepcopy(old)))
        if len(self._changes) > self.history_limit:
            drop = len(self._changes) - self.history_limit // 2
            self._forgotten_rv = self._changes[drop - 1].rv
            del self._changes[:drop]
        self._notify()
        return new

    def _notify(self) -> None:
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    # ---- create

    def _create(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None,
                body: Any, *, dry_run: bool = False, keep_status: bool = False) -> dict:
        kind, api_version = kind_of(res, info), api_version_of(res)
        if not isinstance(body, dict):
            raise bad_request("the request body must be an object")
        if body.get("kind") not in (None, kind) or body.get("apiVersion") not in (None, api_version):
            raise bad_request(f"the body is a {body.get('apiVersion')}/{body.get('kind')}, "
                              f"the URL is for {api_version}/{kind}")
        obj = copy.deepcopy(body)
        obj.pop("kind", None), obj.pop("apiVersion", None)
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") not in (None, "", namespace):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        name = meta.get("name") or self._generate_name(res, namespace, meta.get("generateName"))
        if not name:
            raise invalid(res, kind, "", "metadata.name", "Required value: name or generateName is required")
        if len(name) > 253 or not _NAME.match(name):
            raise invalid(res, kind, name, "metadata.name",
                          f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                          "alphanumeric characters, '-' or '.'")
        key = (res, namespace, name)
        if self._live(key) is not None:
            raise already_exists(res, name)
        if namespace is not None:
            self._check_namespace(res, kind, name, namespace)

        obj = {"apiVersion": api_version, "kind": kind, **obj}
        meta = obj["metadata"]
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=self._now(), generation=1)
        if namespace is not None:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(field, None)
        if "status" in info.subresources and not keep_status:
            obj.pop("status", None)
        if res == NAMESPACES:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj.setdefault("status", {})["phase"] = "Active"
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        if res == CRDS:
            crd_status(obj)
        if dry_run:
            return obj
        stored = self._commit(key, "ADDED", obj, None)
        if res == CRDS:
            self._serve_crd(stored)
        return stored

    def _generate_name(self, res: kmock.resource, namespace: str | None, prefix: str | None) -> str | None:
        if not prefix:
            return None
        while True:
            name = prefix[:58] + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
            if self._live((res, namespace, name)) is None:
                return name

    def _check_namespace(self, res: kmock.resource, kind: str, name: str, namespace: str) -> None:
        ns = self._live((NAMESPACES, None, namespace))
        if ns is None and self.require_namespaces:
            raise not_found(NAMESPACES, namespace)
        if ns is not None and meta_of(ns).get("deletionTimestamp"):
            raise namespace_terminating(res, name, namespace)

    # ---- update (PUT and PATCH end here)

    def _update(self, res: kmock.resource, info: kmock.ResourceInfo, key: tuple, old: dict, candidate: Any,
                subresource: str | None, *, via_patch: bool, dry_run: bool = False) -> tuple[dict, bool]:
        """Admit ``candidate`` as the next state of ``old``; store it unless nothing changed."""
        kind, name = kind_of(res, info), key[2]
        if not isinstance(candidate, dict):
            raise bad_request("the object must be a JSON object")
        old_meta, cand_meta = meta_of(old), candidate.setdefault("metadata", {})
        if not isinstance(cand_meta, dict):
            raise bad_request("metadata must be an object")

        # Optimistic concurrency: a resourceVersion that is given must be the current one.
        given_rv = cand_meta.get("resourceVersion")
        if given_rv:
            if str(given_rv) != old_meta.get("resourceVersion"):
                raise conflict(res, name)
        elif not via_patch and res in self._custom:
            raise invalid(res, kind, name, "metadata.resourceVersion",
                          "Invalid value: 0x0: must be specified for an update")
        if cand_meta.get("name", name) != name:
            if via_patch:
                raise invalid(res, kind, name, "metadata.name", "Invalid value: field is immutable")
            raise bad_request(f"the name of the object ({cand_meta.get('name')}) does not match "
                              f"the name on the URL ({name})")
        if cand_meta.get("namespace") not in (None, "", key[1]):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if cand_meta.get("uid") and cand_meta["uid"] != old_meta.get("uid"):
            if via_patch:
                raise invalid(res, kind, name, "metadata.uid", "Invalid value: field is immutable")
            raise conflict(res, name, f"Precondition failed: UID in precondition: {cand_meta['uid']}, "
                                      f"UID in object meta: {old_meta.get('uid')}")

        # The status subresource: each half of the object is written through its own door.
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in candidate:
                new["status"] = copy.deepcopy(candidate["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(candidate)
            if "status" in info.subresources:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new["metadata"]
            for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "generation", "namespace", "name"):
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            if old_meta.get("deletionTimestamp"):
                added = [f for f in meta.get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])]
                if added:
                    raise invalid(res, kind, name, "metadata.finalizers",
                                  f"Forbidden: no new finalizers can be added if the object is being deleted, "
                                  f"found new finalizers {json.dumps(added)}", cause="FieldValueForbidden")
        new["kind"], new["apiVersion"] = kind_of(res, info), api_version_of(res)
        new["metadata"]["resourceVersion"] = old_meta.get("resourceVersion")
        if res == NAMESPACES and subresource != "status":
            new["status"] = copy.deepcopy(old.get("status", {}))
        if res == CRDS:
            crd_status(new)
        if _spec_part(new) != _spec_part(old) and "generation" in old_meta:
            new["metadata"]["generation"] = old_meta["generation"] + 1

        if new == old:
            return old, False  # a no-op: nothing stored, nothing bumped, nobody notified
        if dry_run:
            return new, False
        if new["metadata"].get("deletionTimestamp") and not self._has_finalizers(res, new):
            return self._remove(key, new, old), True
        stored = self._commit(key, "MODIFIED", new, old)
        if res == CRDS:
            self._serve_crd(stored)
        return stored, True

    @staticmethod
    def _has_finalizers(res: kmock.resource, obj: Mapping[str, Any]) -> bool:
        spec_finalizers = (obj.get("spec") or {}).get("finalizers") if res == NAMESPACES else None
        return bool(meta_of(obj).get("finalizers") or spec_finalizers)

    # ---- delete

    def _delete(self, res: kmock.resource, key: tuple, *, options: Mapping[str, Any] | None = None,
                dry_run: bool = False) -> tuple[dict, bool]:
        options = options or {}
        current = self._live(key)
        if current is None:
            raise not_found(res, key[2])
        meta = meta_of(current)
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") not in (None, meta.get("uid")):
            raise conflict(res, key[2], f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                                        f"UID in object meta: {meta.get('uid')}")
        if preconditions.get("resourceVersion") not in (None, meta.get("resourceVersion")):
            raise conflict(res, key[2])
        if meta.get("deletionTimestamp") or dry_run:
            return current, False  # already being deleted: nothing more to do
        if options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True:
            self._orphan_dependents(meta.get("uid"))
        if not self._has_finalizers(res, current):
            return self._remove(key, current, current), True
        new = copy.deepcopy(current)
        new["metadata"].update(deletionTimestamp=self._now(), deletionGracePeriodSeconds=0)
        if "generation" in meta:
            new["metadata"]["generation"] = meta["generation"] + 1  # the server marks deletion so
        if res == NAMESPACES:
            new.setdefault("status", {})["phase"] = "Terminating"
        stored = self._commit(key, "MODIFIED", new, current)
        if res == NAMESPACES:
            self._terminate_namespace(key[2])
            return self._live(key) or stored, True
        return stored, True

    def _remove(self, key: tuple, final: dict, old: dict) -> dict:
        """The object is gone: tell the watchers, then run the controllers that care."""
        gone = self._commit(key, "DELETED", final, old)
        res, namespace, name = key
        if res == CRDS:
            self._unserve_crd(name)
        if res == NAMESPACES:
            for k, _ in list(self._objects_of()):
                if k[1] == name:  # a namespace only goes once it is empty; a forced removal empties it
                    self._remove(k, self._live(k), self._live(k))
        if self.garbage_collection:
            self._collect_dependents(meta_of(final).get("uid"))
        if namespace is not None:
            self._finish_namespace(namespace)
        return gone

    def _collect_dependents(self, owner_uid: str | None) -> None:
        """The garbage collector: dependents whose owners are all gone are deleted (background)."""
        if not owner_uid:
            return
        live = {meta_of(obj).get("uid") for _, obj in self._objects_of()}
        for key, obj in list(self._objects_of()):
            refs = meta_of(obj).get("ownerReferences") or []
            if any(r.get("uid") == owner_uid for r in refs) and not any(r.get("uid") in live for r in refs):
                if self._live(key) is not None:
                    self._delete(key[0], key)

    def _orphan_dependents(self, owner_uid: str | None) -> None:
        for key, obj in list(self._objects_of()):
            refs = meta_of(obj).get("ownerReferences") or []
            if owner_uid and any(r.get("uid") == owner_uid for r in refs):
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                self._commit(key, "MODIFIED", new, obj)

    def _terminate_namespace(self, namespace: str) -> None:
        """The namespace controller: delete the contents, then let the namespace go."""
        for key, _ in list(self._objects_of()):
            if key[1] == namespace and self._live(key) is not None:
                self._delete(key[0], key)
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        key = (NAMESPACES, None, namespace)
        ns = self._live(key)
        if ns is None or not meta_of(ns).get("deletionTimestamp") or (ns.get("spec") or {}).get("finalizers") == []:
            return
        if any(k[1] == namespace for k, _ in self._objects_of()):
            return
        new = copy.deepcopy(ns)
        new.setdefault("spec", {})["finalizers"] = []
        if meta_of(new).get("finalizers"):
            self._commit(key, "MODIFIED", new, ns)
        else:
            self._remove(key, new, ns)

    # ---- CustomResourceDefinitions: creating one serves its resource

    def _serve_crd(self, crd: Mapping[str, Any]) -> None:
        served = served_resources(crd)
        for res, (info, columns) in served.items():
            self.resources[res] = info
            self._custom.add(res)
            self._columns[res] = columns
        name = meta_of(crd)["name"]
        for res in self._crd_served.get(name, set()) - set(served):
            self._forget_resource(res)
        self._crd_served[name] = set(served)

    def _unserve_crd(self, name: str) -> None:
        for res in self._crd_served.pop(name, set()):
            for key, obj in list(self._objects_of(res)):
                self._commit(key, "DELETED", obj, obj)
            self._forget_resource(res)

    def _forget_resource(self, res: kmock.resource) -> None:
        self._custom.discard(res)
        self._columns.pop(res, None)
        if res in self.resources:
            del self.resources[res]
