"""check_writable when several workers check one new folder at the same moment."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.base.errors import ConfigError
from harness.base.files import check_writable


def test_a_folder_another_check_removed_meanwhile_is_made_again(tmp_path, monkeypatch):
    """Another worker's check removes the folder it made between this check's mkdir and its
    probe (the race three workers hit on a new study's output folder): the check makes it
    again and passes, leaving nothing behind."""
    folder = tmp_path / "sweeps" / "study"
    write_text = Path.write_text
    raced = []

    def write_after_a_rival_removed_the_folder(self, *args, **kwargs):
        if not raced and self.parent == folder:
            raced.append(self)
            folder.rmdir()  # what the rival's cleanup does
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_after_a_rival_removed_the_folder)
    check_writable("display.log_file", folder)
    assert raced and not (tmp_path / "sweeps").exists()


def test_a_folder_another_check_made_and_removed_during_this_mkdir_is_made_again(
    tmp_path, monkeypatch
):
    """The rival made the folder just before this check's mkdir, and its cleanup removed it
    just after: Path.mkdir raises FileExistsError for a name that is no longer there (seen with
    two final-stage workers). The check makes the folder again and passes."""
    folder = tmp_path / "sweeps" / "study"
    mkdir = Path.mkdir
    raced = []

    def mkdir_as_the_rival_comes_and_goes(self, *args, **kwargs):
        if not raced and self == folder:
            raced.append(self)
            raise FileExistsError(17, "File exists", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir_as_the_rival_comes_and_goes)
    check_writable("study.output_dir", folder)
    assert raced and not (tmp_path / "sweeps").exists()


def test_a_file_where_the_folder_should_be_is_still_refused(tmp_path):
    (tmp_path / "study").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"study.output_dir: cannot write to .*File exists"):
        check_writable("study.output_dir", tmp_path / "study")
