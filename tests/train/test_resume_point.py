"""Resuming passes over a checkpoint that a killed run left half-written."""

from __future__ import annotations

import json
from pathlib import Path

from artemis.train.runner import last_complete_checkpoint


def _checkpoint(root: Path, step: int, state: str | None) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_the_newest_whole_checkpoint_is_chosen(tmp_path: Path) -> None:
    assert last_complete_checkpoint(tmp_path / "none") is None
    assert last_complete_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 2, json.dumps({"global_step": 2}))
    whole = _checkpoint(tmp_path, 10, json.dumps({"global_step": 10}))  # 10 > 4 numerically, not by name
    _checkpoint(tmp_path, 4, json.dumps({"global_step": 4}))
    assert last_complete_checkpoint(tmp_path) == str(whole)
    _checkpoint(tmp_path, 12, "")  # killed while writing the state
    _checkpoint(tmp_path, 14, None)  # killed before it
    _checkpoint(tmp_path, 16, '{"global_st')
    (tmp_path / "checkpoint-last").mkdir()  # not a step
    assert last_complete_checkpoint(tmp_path) == str(whole)
