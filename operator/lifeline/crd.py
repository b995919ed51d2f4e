"""Turn the pydantic models into CustomResourceDefinitions.

The API server wants a *structural* OpenAPI v3 schema: every node typed, no
``$ref``, no ``anyOf`` with null, no JSON-Schema-2020 extras. Pydantic emits
JSON Schema 2020-12, so this module inlines references and rewrites the parts
Kubernetes does not accept. Defaults stay in the models (and are named in the
field descriptions) so that a user's object is stored as they wrote it.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from lifeline.api import KINDS, KindInfo
from lifeline.labels import LABEL_APP_NAME, LABEL_APP_PART_OF

_DROP = {"title", "default", "$defs"}


def _inline(node: Any, defs: dict) -> Any:
    if isinstance(node, list):
        return [_inline(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs)
    return {k: _inline(v, defs) for k, v in node.items()}


def _describe_default(node: dict, default: Any) -> None:
    if default is None or default == [] or default == {}:
        return
    shown = str(default).lower() if isinstance(default, bool) else default
    text = node.get("description", "").rstrip()
    node["description"] = f"{text} Default: {shown}.".strip()


def _structural(node: Any) -> Any:
    """Rewrite one (already inlined) JSON Schema node into Kubernetes' dialect."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    default = node.get("default")

    # Optional[X] is `anyOf: [X, {type: null}]`: keep X, not-required already says optional.
    if "anyOf" in node:
        choices = [c for c in node["anyOf"] if c.get("type") != "null"]
        if len(choices) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node['anyOf']}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        node = {**choices[0], **{k: v for k, v in rest.items() if k in ("description", "default")}}
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")

    # JSON Schema 2020 numeric exclusive bounds -> OpenAPI v3.0 boolean flags.
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[flag] = node.pop(bound)
            node[bound] = True

    if node.get("additionalProperties") is False:
        del node["additionalProperties"]  # pruning of unknown fields is the structural default
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"])
    if "properties" in node:
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
        node.setdefault("type", "object")
    if "items" in node:
        node["items"] = _structural(node["items"])
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        raise ValueError(f"schema node without a type: {node}")
    _describe_default(node, default)
    return {k: v for k, v in node.items() if k not in _DROP}


def model_schema(model) -> dict:
    """The structural schema of one pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(_inline(raw, raw.get("$defs", {})))


def crd_for(info: KindInfo) -> dict:
    """A complete apiextensions.k8s.io/v1 CustomResourceDefinition for one kind."""
    spec_schema = model_schema(info.spec_model)
    status_schema = model_schema(info.status_model)
    spec_schema.setdefault("description", info.description)
    status_schema["description"] = "Observed state, written by the Lifeline operator."
    columns = [dict(c) for c in info.printer_columns]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {LABEL_APP_NAME: "lifeline", LABEL_APP_PART_OF: "lifeline"},
        },
        "spec": {
            "group": info.group,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": ["lifeline"],
            },
            "versions": [
                {
                    "name": info.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": info.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `lifeline crds` from the models in operator/lifeline/api. Do not edit.\n"


def render(info: KindInfo) -> str:
    return HEADER + yaml.safe_dump(crd_for(info), sort_keys=False, width=120)


def file_name(info: KindInfo) -> str:
    return f"{info.crd_name}.yaml"


def write_all(directory: Path) -> list[Path]:
    """Write one file per kind; remove stale generated files of kinds that are gone."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {file_name(i): render(i) for i in KINDS}
    for stale in directory.glob(f"*.{KINDS[0].group}.yaml"):
        if stale.name not in wanted:
            stale.unlink()
    written = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def drift(directory: Path) -> list[str]:
    """What differs between ``directory`` and the models, one line a file; empty when in step."""
    problems = []
    wanted = {file_name(i): render(i) for i in KINDS}
    for name, text in wanted.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text() != text:
            problems.append(f"{path}: differs from the models")
    for extra in directory.glob(f"*.{KINDS[0].group}.yaml"):
        if extra.name not in wanted:
            problems.append(f"{extra}: no model for it")
    return problems
