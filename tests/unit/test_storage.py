"""Files are written whole: a reader sees the complete file or none (issue 26)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_file_appears_whole_under_its_name(tmp_path: Path) -> None:
    from ibkr_provider.operators.storage import storage_path, write_whole  # imports Airflow

    target = storage_path(str(tmp_path)) / "snapshot.json"
    write_whole(target, '{"accounts": []}')
    assert (tmp_path / "snapshot.json").read_text() == '{"accounts": []}'
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.json"]  # no temporary file left


def test_a_write_that_fails_leaves_nothing_under_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies between writing and publishing (here: the rename fails): no file under
    the final name, and the temporary one is cleaned up."""
    from ibkr_provider.operators.storage import storage_path, write_whole  # imports Airflow

    target = storage_path(str(tmp_path)) / "snapshot.json"

    def dies(self: object, *args: object) -> None:
        raise OSError("worker killed")

    monkeypatch.setattr(type(target), "rename", dies)
    with pytest.raises(OSError):
        write_whole(target, "x" * 1000)
    assert list(tmp_path.iterdir()) == []
