"""Tests for ktrainer.serializers._atomic.atomic_write."""

from __future__ import annotations

import os

import pytest

from ktrainer.serializers._atomic import atomic_write


def test_success_replaces_the_target(tmp_path):
    target = tmp_path / "snapshot"
    target.write_text("old")
    with atomic_write(target) as temp:
        assert os.path.dirname(temp) == str(tmp_path)
        assert os.path.basename(temp).startswith(".snapshot.")
        assert target.read_text() == "old"  # untouched until the block ends
        with open(temp, "w") as f:
            f.write("new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["snapshot"]


def test_new_file_gets_default_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    with atomic_write(tmp_path / "new") as temp, open(temp, "w") as f:
        f.write("x")
    assert os.stat(tmp_path / "new").st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(
    "error", [ValueError("bad"), KeyboardInterrupt()], ids=["exception", "interrupt"]
)
def test_failure_keeps_the_target_and_removes_the_temp_file(tmp_path, error):
    target = tmp_path / "snapshot"
    target.write_text("old")

    def interrupted_save():
        with atomic_write(target) as temp:
            with open(temp, "w") as f:
                f.write("half")
            raise error

    with pytest.raises(type(error)):
        interrupted_save()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["snapshot"]


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "no" / "file"):
        pass
