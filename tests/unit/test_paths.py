"""Writing an operator's output paths: whole files or nothing, never over a file that exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence.errors import ConfigError
from ringfence.paths import output_dir, write_file, write_new_file


def test_a_new_file_is_written_whole_and_never_over_an_existing_one(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    write_new_file(target, "one\n")
    assert target.read_text() == "one\n"
    with pytest.raises(ConfigError, match="already exists"):
        write_new_file(target, "two\n")
    assert target.read_text() == "one\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]  # no temporary left


def test_an_output_file_replaces_its_own_name_whole(tmp_path: Path) -> None:
    target = tmp_path / "index.html"
    write_file(target, "old")
    write_file(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]
    (tmp_path / "status.json").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        write_file(tmp_path / "status.json", "{}")


def test_an_output_directory_is_created_one_level_deep_only(tmp_path: Path) -> None:
    assert output_dir(tmp_path / "reports").is_dir()
    with pytest.raises(ConfigError, match="no such directory"):
        output_dir(tmp_path / "a" / "b" / "c")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        output_dir(tmp_path / "file")


def test_writing_into_a_vanished_directory_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such directory") as caught:
        write_new_file(tmp_path / "gone" / "x.md", "text")
    assert caught.value.file == str(tmp_path / "gone" / "x.md")
