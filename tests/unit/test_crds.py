"""Generated CRDs: valid for the API server, structural, and in step with the models."""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from lifeline import crd
from lifeline.api import BY_KIND, KINDS
from lifeline.api.common import Model
from lifeline.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def openapi(kind: str) -> dict:
    return crd.crd_for(BY_KIND[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("directory", crd_dirs := ["crds", "charts/lifeline/crds"])
def test_checked_in_crds_match_the_models(directory):
    assert crd.drift(ROOT / directory) == [], "run `lifeline crds` and commit the result"


def test_crds_check_command_passes_on_the_checked_in_files(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["crds", "--check"]) == 0
    assert "CRDs match the models" in capsys.readouterr().out


def test_editing_a_model_without_regenerating_is_caught(tmp_path, monkeypatch):
    crd.write_all(tmp_path)
    assert crd.drift(tmp_path) == []
    spec = BY_KIND["BackupPolicy"].spec_model
    field = spec.model_fields["suspend"]
    monkeypatch.setattr(field, "description", "A changed description nobody regenerated.")
    spec.model_rebuild(force=True)
    try:
        assert crd.drift(tmp_path) == [f"{tmp_path}/backuppolicies.dr.lifeline.io.yaml: differs from the models"]
    finally:
        monkeypatch.undo()
        spec.model_rebuild(force=True)
    assert crd.drift(tmp_path) == []


def test_a_stale_or_missing_file_is_reported(tmp_path):
    crd.write_all(tmp_path)
    (tmp_path / "restores.dr.lifeline.io.yaml").unlink()
    (tmp_path / "gone.dr.lifeline.io.yaml").write_text("{}")
    assert sorted(crd.drift(tmp_path)) == sorted(
        [f"{tmp_path}/restores.dr.lifeline.io.yaml: missing", f"{tmp_path}/gone.dr.lifeline.io.yaml: no model for it"]
    )


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_crd_is_valid_apiextensions_v1(info):
    doc = load(ROOT / "crds" / crd.file_name(info))
    kubernetes_validate.validate(doc, "1.30", strict=True)


def _walk(node, path="$"):
    yield path, node
    if isinstance(node, dict):
        for key in ("properties",):
            for name, child in node.get(key, {}).items():
                yield from _walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            yield from _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_schema_is_structural(info):
    schema = openapi(info.kind)
    for path, node in _walk(schema):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "not", "const", "$defs", "title", "default"):
            assert banned not in node, f"{path} uses {banned}"
        if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node:
            assert path == "$.metadata", f"{path} is an object with no schema: values would be pruned"


def test_printer_columns_a_person_wants():
    def names(kind):
        return [c["name"] for c in crd.crd_for(BY_KIND[kind])["spec"]["versions"][0]["additionalPrinterColumns"]]

    assert [n for n in names("BackupPolicy") if n != "Points"][:4] == ["Tier", "Last Success", "RPO", "Ready"]
    assert {"Active Site", "Phase", "Last Failover"} <= set(names("FailoverPlan"))
    for info in KINDS:
        spec = crd.crd_for(info)["spec"]
        assert "lifeline" in spec["names"]["categories"]
        assert spec["names"]["shortNames"]
        assert spec["versions"][0]["subresources"] == {"status": {}}
        assert names(info.kind)[-1] == "Age"


def test_one_of_rules_reach_the_api_server_as_cel():
    source = openapi("BackupPolicy")["properties"]["spec"]["properties"]["source"]
    rules = source["x-kubernetes-validations"]
    assert rules[0]["rule"].endswith(".filter(x, x).size() == 1")
    conditions = openapi("BackupPolicy")["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_defaults_are_documented_not_applied_by_the_server():
    retention = openapi("BackupPolicy")["properties"]["spec"]["properties"]["retention"]["properties"]
    assert retention["keepYearly"]["description"].endswith("Default: 6.")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates_against_its_crd_schema(path):
    doc = load(path)
    jsonschema.validate(doc, openapi(doc["kind"]))


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda s: s.update(tier="D"), "tier"),
        (lambda s: s["retention"].update(keepLast=-1), "keepLast"),
        (lambda s: s["objectives"].update(rpo="5 minutes"), "rpo"),
        (lambda s: s.update(destinations=[]), "destinations"),
    ],
)
def test_crd_schema_refuses_what_the_model_refuses(edit, field):
    doc = load(ROOT / "examples" / "backuppolicy-pacs-images.yaml")
    bad = copy.deepcopy(doc)
    edit(bad["spec"])
    with pytest.raises(jsonschema.ValidationError) as err:
        jsonschema.validate(bad, openapi("BackupPolicy"))
    assert field in "/".join(map(str, err.value.absolute_path))


def test_models_forbid_unknown_fields_like_the_api_server_prunes_them():
    assert Model.model_config["extra"] == "forbid"
