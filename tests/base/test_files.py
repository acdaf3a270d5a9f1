"""check_writable when several workers check one new folder at the same moment."""

from __future__ import annotations

from pathlib import Path

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
