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


def test_a_save_starts_the_writeback_of_large_arrays_and_closes_its_fd(
    tmp_path, monkeypatch
):
    import numpy as np

    from ktrainer.serializers import load_hdf5, save_hdf5

    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this platform")
    calls = []
    real = os.posix_fadvise

    def recording(fd, offset, length, advice):
        calls.append(advice)
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", recording)
    fds = len(os.listdir("/proc/self/fd"))

    class State:
        big = np.arange(3 << 20, dtype="float32")  # 12 MiB: one writeback
        small = np.arange(4)

        def serialize(self, serializer):
            self.big = serializer("big", self.big)
            self.small = serializer("small", self.small)

    save_hdf5(tmp_path / "s.h5", State())
    assert calls == [os.POSIX_FADV_DONTNEED]
    assert len(os.listdir("/proc/self/fd")) == fds
    target = State()
    target.big, target.small = np.zeros_like(State.big), np.zeros(4, "int64")
    load_hdf5(tmp_path / "s.h5", target)
    np.testing.assert_array_equal(target.big, State.big)


def test_a_save_works_without_posix_fadvise(tmp_path, monkeypatch):
    import numpy as np

    from ktrainer.serializers import load_hdf5, save_hdf5

    monkeypatch.delattr(os, "posix_fadvise", raising=False)
    values = {"big": np.ones(2 << 20, "float32")}
    save_hdf5(tmp_path / "s.h5", values)

    class Target:
        big = np.zeros(2 << 20, "float32")

        def serialize(self, serializer):
            self.big = serializer("big", self.big)

    target = Target()
    load_hdf5(tmp_path / "s.h5", target)
    assert target.big.sum() == 2 << 20
