"""The README's commands and snippets work as written.

The Python snippets are run the way a reader uses them: the quickstart
first, then each later snippet on top of the quickstart's names (one
epoch instead of ten, to stay quick).
"""

from __future__ import annotations

import os
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.skipif(
    not README.exists(), reason="runs from a source checkout"
)


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def _quickstart_head() -> str:
    """The quickstart up to `trainer.run()`."""
    quickstart = _blocks("python")[0]
    head, run, _ = quickstart.rpartition("trainer.run()")
    assert run, "the quickstart ends with trainer.run()"
    assert '(10, "epoch")' in head  # made one epoch by the caller
    return head


def _snippet(word: str) -> str:
    snippets = [block for block in _blocks("python") if word in block]
    assert snippets, f"no README snippet contains {word!r}"
    return snippets[0]


def test_every_command_that_runs_python_sets_the_backend():
    # Keras defaults to tensorflow, which a `.[jax]` install lacks.
    lines = [line for block in _blocks("bash") for line in block.splitlines()]
    lines += re.findall(r"`([^`\n]*\bpython [^`\n]*)`", README.read_text())
    commands = [
        command.strip()
        for line in lines
        for command in line.split("&&")
        if re.search(r"\bpython\b", command)
    ]
    assert commands
    for command in commands:
        assert re.match(r"KERAS_BACKEND=(tensorflow|jax|torch) python ", command), (
            command
        )


def test_install_lines_cover_every_backend_extra():
    installs = " ".join(_blocks("bash"))
    for backend in ("tensorflow", "jax", "torch"):
        assert re.search(rf"pip install '\.\[{backend},examples\]'", installs)
    assert "pip install 'ktrainer[" not in README.read_text()


SNIPPETS = [
    ("callbacks", "CSVLogger", "trainer.run()\n"),
    ("snapshot", "snapshot(n_retains", ""),
    (
        "feed-the-data",
        "as_iterator((x_train",
        "x_train, y_train = x[:1500], y[:1500]\nx_test, y_test = x[1500:], y[1500:]\n",
    ),
]


@pytest.mark.parametrize(
    ("word", "extra"), [s[1:] for s in SNIPPETS], ids=[s[0] for s in SNIPPETS]
)
def test_snippet_runs_after_the_quickstart(tmp_path, monkeypatch, capsys, word, extra):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    snippet = _snippet(word)
    if word.startswith("as_iterator"):
        source = _quickstart_head() + extra + snippet + "trainer.run()\n"
    else:
        source = _quickstart_head() + snippet + extra
    source = source.replace('(10, "epoch")', '(1, "epoch")')
    namespace: dict = {}
    exec(compile(source, f"README:{word}", "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.updater.epoch == 1
    if word == "CSVLogger":
        with open(os.path.join("result", "log.csv")) as f:
            header = f.readline().strip().split(",")
        assert {"loss", "val_loss", "val_accuracy"} <= set(header)
    assert "validation/main/loss" in trainer.observation
    capsys.readouterr()
