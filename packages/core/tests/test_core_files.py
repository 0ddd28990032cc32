"""replace_file: whole or nothing, permissions from creation, no temporary file left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tenfold.core.files import replace_file


def test_text_and_bytes_replace_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    replace_file(path, "é\n")
    assert path.read_bytes() == "é\n".encode()
    replace_file(path, b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_mode_is_the_files_from_creation_and_the_umask_applies(tmp_path: Path) -> None:
    replace_file(tmp_path / "secret", "k", mode=0o600)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    old = os.umask(0o027)
    try:
        replace_file(tmp_path / "plain", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o640


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("kept")
    with pytest.raises(OSError):
        replace_file(target, "new")  # a directory cannot be replaced by a file
    assert (target / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "no" / "such" / "dir", "x")
