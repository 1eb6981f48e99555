"""The seam's contract: every backend module provides the same names.

Read from the source (`ast`), so the check runs under any one backend
without importing the other frameworks.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

from ktrainer import _backend

SEAM = pathlib.Path(_backend.__file__).parent
BACKENDS = ("jax", "tensorflow", "torch")


def _public(path: pathlib.Path) -> dict[str, set[str]]:
    """Top-level public functions and classes, each class with its methods."""
    tree = ast.parse(path.read_text())
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not (
            node.name.startswith("_")
        ):
            methods = set()
            if isinstance(node, ast.ClassDef):
                methods = {
                    item.name
                    for item in node.body
                    if isinstance(item, ast.FunctionDef)
                    and (not item.name.startswith("_") or item.name == "__call__")
                }
            names[node.name] = methods
    return names


def test_every_backend_module_provides_the_same_names_and_methods():
    found = {name: _public(SEAM / f"{name}.py") for name in BACKENDS}
    reference = found["jax"]
    for name in BACKENDS[1:]:
        assert found[name] == reference, name


def test_the_seam_exports_exactly_the_backend_names_plus_the_common_ones():
    backend_names = set(_public(SEAM / "jax.py"))
    common = set(_public(SEAM / "_common.py")) & set(_backend.__all__)
    assert set(_backend.__all__) == backend_names | common | {"BACKEND"}


@pytest.mark.parametrize("name", BACKENDS)
def test_the_contract_documents_every_backend_name(name):
    doc = (SEAM / "base.py").read_text()
    missing = [n for n in _public(SEAM / f"{name}.py") if f"`{n}" not in doc]
    assert missing == []
