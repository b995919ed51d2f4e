"""``lifeline.labels`` is the one place a label, annotation or finalizer key is spelled."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import lifeline
from lifeline import labels

PACKAGE = Path(lifeline.__file__).parent
# a string that is a key of Lifeline's own or one of the recommended labels it sets, and nothing else
KEY = re.compile(r"(dr\.lifeline\.io|app\.kubernetes\.io)/[A-Za-z0-9._-]+")


def test_it_sits_at_the_bottom_and_imports_nothing():
    tree = ast.parse((PACKAGE / "labels.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_no_other_module_spells_a_key():
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "labels.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and KEY.fullmatch(node.value) \
                    and node.value != lifeline.API_VERSION:
                spelled.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value}")
    assert not spelled, "use the constant from lifeline.labels: " + ", ".join(spelled)


def test_each_key_is_named_once_per_group():
    for prefix in ("LABEL_", "ANN_", "FINALIZER_"):
        keys = {name: value for name, value in vars(labels).items() if name.startswith(prefix)}
        assert keys and len(set(keys.values())) == len(keys), prefix
