"""A build's version appears complete or not at all; LATEST moves only after it is in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.pipeline.staging import Stages, staged_version, version_name


def test_a_complete_version_is_renamed_into_place_and_named_latest(tmp_path: Path) -> None:
    with staged_version(tmp_path / "artifacts", "v1") as staging:
        assert staging.name == ".v1.partial" and not any(staging.iterdir())
        (staging / "manifest.json").write_text("{}")
    assert (tmp_path / "artifacts" / "v1" / "manifest.json").read_text() == "{}"
    assert (tmp_path / "artifacts" / "LATEST").read_text() == "v1\n"
    assert not (tmp_path / "artifacts" / ".v1.partial").exists()


def test_a_failed_build_leaves_nothing_and_latest_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    with staged_version(out, "v1"):
        pass
    with pytest.raises(RuntimeError, match="stage failed"), staged_version(out, "v2") as staging:
        (staging / "half.npy").write_text("x")
        raise RuntimeError("stage failed")
    assert sorted(p.name for p in out.iterdir()) == ["LATEST", "v1"]
    assert (out / "LATEST").read_text() == "v1\n"


def test_an_existing_version_is_refused_and_a_stale_staging_folder_replaced(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    (out / "v1").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="already exists"), staged_version(out, "v1"):
        pass
    (out / ".v2.partial").mkdir()
    (out / ".v2.partial" / "old.txt").write_text("from a crashed build")
    with staged_version(out, "v2") as staging:
        assert not any(staging.iterdir())
    assert sorted(p.name for p in (out / "v2").iterdir()) == []


def test_version_names_are_safe_folder_names_and_stages_are_timed() -> None:
    name = version_name("Beauty 2014/x")
    assert name.endswith("-Beauty-2014-x") and "/" not in name and " " not in name
    assert version_name("").endswith("-data")
    stages = Stages()
    with stages.run("a"):
        pass
    with stages.run("b"):
        pass
    assert list(stages.seconds) == ["a", "b"] and all(v >= 0 for v in stages.seconds.values())
