"""The three PATCH flavours the API server takes: JSON merge, JSON and strategic merge.

kubectl patches custom resources with a merge patch and builtins with a strategic
one, controllers send JSON patches, and server-side apply is merged here like a
strategic merge patch; each is a pure function from the stored object and the
request body to the candidate next state, which the emulator then admits or refuses.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from lifeline.devstack.api_errors import bad_request, patch_failed


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise patch_failed(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list, token: str, *, adding: bool) -> int:
    if adding and token == "-":
        return len(container)
    if not token.isdigit():
        raise patch_failed(f"invalid list index {token!r}")
    index = int(token)
    if index > len(container) or (not adding and index == len(container)):
        raise patch_failed(f"list index {index} out of range")
    return index


def _resolve(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token, adding=False)]
        else:
            raise patch_failed(f"path /{'/'.join(tokens)} does not exist")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test) on a copy of ``doc``."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise bad_request("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)

    def put(tokens: list[str], value: Any, *, replace: bool) -> None:
        nonlocal doc
        if not tokens:
            doc = value
            return
        parent = _resolve(doc, tokens[:-1])
        last = tokens[-1]
        if isinstance(parent, dict):
            if replace and last not in parent:
                raise patch_failed(f"cannot replace missing /{'/'.join(tokens)}")
            parent[last] = value
        elif isinstance(parent, list):
            i = _index(parent, last, adding=not replace)
            if replace:
                parent[i] = value
            else:
                parent.insert(i, value)
        else:
            raise patch_failed(f"cannot add to a scalar at /{'/'.join(tokens[:-1])}")

    def take(tokens: list[str]) -> Any:
        if not tokens:
            raise patch_failed("cannot remove the whole document")
        parent = _resolve(doc, tokens[:-1])
        last = tokens[-1]
        if isinstance(parent, dict) and last in parent:
            return parent.pop(last)
        if isinstance(parent, list):
            return parent.pop(_index(parent, last, adding=False))
        raise patch_failed(f"cannot remove missing /{'/'.join(tokens)}")

    for op in ops:
        kind, path = op.get("op"), _pointer(op.get("path", ""))
        if kind in ("add", "replace", "test") and "value" not in op:
            raise bad_request(f"JSON patch op {kind!r} needs a value")
        if kind == "add":
            put(path, copy.deepcopy(op["value"]), replace=False)
        elif kind == "replace":
            put(path, copy.deepcopy(op["value"]), replace=True)
        elif kind == "remove":
            take(path)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = take(source) if kind == "move" else copy.deepcopy(_resolve(doc, source))
            put(path, value, replace=False)
        elif kind == "test":
            if _resolve(doc, path) != op["value"]:
                raise patch_failed(f"testing value /{'/'.join(path)} failed")
        else:
            raise bad_request(f"unknown JSON patch op {kind!r}")
    return doc


# Merge keys of the lists strategic merge patch merges item by item (patchMergeKey in the Go types).
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",), "imagePullSecrets": ("name",), "hostAliases": ("ip",),
    "ports": ("containerPort", "port"), "conditions": ("type",), "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey",), "resourceClaims": ("name",),
}
_SET_LISTS = frozenset({"finalizers"})  # primitive lists with patchStrategy=merge


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch, as far as kubectl and controllers use it on builtins.

    Maps merge as in a merge patch; lists named in ``_MERGE_KEYS`` merge item by item
    on their key; ``finalizers`` merges as a set. The directives ``$patch``
    (replace/delete/merge), ``$retainKeys``, ``$setElementOrder/<list>`` and
    ``$deleteFromPrimitiveList/<list>`` are honoured. Anything else replaces.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in value]
        elif key.startswith("$setElementOrder/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = _reorder(field, result[field], value)
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _merge_key(field: str, items: Iterable[Any]) -> str | None:
    for candidate in _MERGE_KEYS.get(field, ()):
        if all(isinstance(i, dict) and candidate in i for i in items):
            return candidate
    return None


def _merge_list(field: str, current: Any, patch: list) -> list:
    current = current if isinstance(current, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if field in _SET_LISTS:
        return current + [copy.deepcopy(i) for i in patch if i not in current]
    key = _merge_key(field, [i for i in patch if isinstance(i, dict)] or [{}])
    if key is None or not all(isinstance(i, dict) and key in i for i in current):
        return [copy.deepcopy(i) for i in patch]
    merged = list(current)
    for item in patch:
        at = next((n for n, old in enumerate(merged) if old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if at is not None:
                merged.pop(at)
        elif at is None:
            merged.append(strategic_merge_patch({}, item))
        else:
            merged[at] = strategic_merge_patch(merged[at], item)
    return merged


def _reorder(field: str, items: list, order: list) -> list:
    key = _merge_key(field, items + order)
    ident = (lambda x: x.get(key)) if key else (lambda x: json.dumps(x, sort_keys=True))
    rank = {ident(x): n for n, x in enumerate(order)}
    return sorted(items, key=lambda x: rank.get(ident(x), len(rank)))
