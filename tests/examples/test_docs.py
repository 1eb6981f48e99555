"""The user documentation covers the public API it claims to cover.

`docs/extensions.md` is the reference of every extension and
`docs/trainer.md` of every trigger, each with every argument. These tests
fail when an extension, a trigger or an argument is added to the code
without being documented there.
"""

from __future__ import annotations

import inspect
import pathlib

import pytest

from ktrainer.training import extensions, triggers

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"

# Modules rather than extensions, and keyword aliases kept for Chainer.
NOT_EXTENSIONS = {"snapshot_writers"}
ALIASES = {"kwargs"}


def _documented_arguments(obj) -> list[str]:
    parameters = inspect.signature(obj).parameters
    return [name for name in parameters if name not in ALIASES]


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


EXTENSIONS = sorted(set(extensions.__all__) - NOT_EXTENSIONS)
TRIGGERS = sorted(triggers.__all__)


@pytest.mark.parametrize("name", EXTENSIONS)
def test_extensions_reference_documents_every_argument(name):
    page = _page("extensions.md")
    assert f"`{name}" in page, f"{name} is missing from docs/extensions.md"
    for argument in _documented_arguments(getattr(extensions, name)):
        assert f"`{argument}`" in page, (
            f"argument {argument!r} of {name} is missing from docs/extensions.md"
        )


@pytest.mark.parametrize("name", TRIGGERS)
def test_trainer_page_documents_every_trigger_argument(name):
    page = _page("trainer.md")
    headings = [line for line in page.splitlines() if line.startswith("### ")]
    heading = next((line for line in headings if name in line), None)
    assert heading is not None, f"{name} has no section in docs/trainer.md"
    for argument in _documented_arguments(getattr(triggers, name)):
        assert argument in heading, (
            f"argument {argument!r} of {name} is missing from its heading in "
            "docs/trainer.md"
        )


def test_porting_table_names_every_extension_and_trigger():
    page = _page("porting.md")
    missing = [name for name in EXTENSIONS + TRIGGERS if name not in page]
    assert not missing, f"missing from docs/porting.md: {missing}"
