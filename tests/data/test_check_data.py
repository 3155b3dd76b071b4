"""`kuavo-train check-data`: every defect gives a one-line message naming the file/key and the fix.

One small synthetic task (image mode) and one video task are generated once per module; each defect
is made in a COPY, and every check asserts that the checked tree is byte-for-byte (and mtime) unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kuavo_train.data.check import (
    DatasetReport,
    check_data_main,
    check_dataset,
    check_datasets,
    format_report,
)
from kuavo_train.demo.synthetic import CAMERA_KEYS, SyntheticTaskSpec, write_synthetic_task
from kuavo_train.errors import KuavoError

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE, ACTION = "observation.state", "action"
INSTRUCTION = (
    "Pick up the moving object from the conveyor belt, place it on the table, and push it to the designated area"
)
WALK_INSTRUCTION = (
    "Move from the starting point to the rack, pick up the workpiece, turn around, move to the placement rack, "
    "and place it in the designated position"
)
NUM_EPISODES = 4
HW = (24, 32)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}|{stat.st_mtime_ns}|{path.is_dir()}".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def check(root: Path, **expect) -> DatasetReport:
    """check_dataset + the guarantees every report must keep: source untouched, one-line messages."""
    before = tree_digest(root)
    report = check_dataset(root, **expect)
    assert tree_digest(root) == before, "check_dataset modified the dataset"
    assert_one_line(report)
    return report


def assert_one_line(report: DatasetReport) -> None:
    for message in [*report.problems, *report.notes]:
        assert "\n" not in message and message.strip() == message


def problem_with(report: DatasetReport, *needles: str) -> str:
    matches = [p for p in report.problems if all(n in p for n in needles)]
    assert matches, f"no problem mentions {needles}; problems: {report.problems}"
    return matches[0]


def episode_file(root: Path, episode: int) -> Path:
    return root / "data" / "chunk-000" / f"episode_{episode:06d}.parquet"


def edit_info(root: Path, **changes) -> None:
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    info.update(changes)
    path.write_text(json.dumps(info, indent=4))


def poke(path: Path, key: str, row: int, dim: int, value: float) -> None:
    """Rewrite one episode parquet with ``value`` at ``[row, dim]`` of the vector column ``key``."""
    table = pq.read_table(path)
    column = table.column(key).combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), -1)
    values[row, dim] = value
    new = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), type=pa.float32()), type=column.type)
    index = table.schema.get_field_index(key)
    pq.write_table(table.set_column(index, table.schema.field(index), new), path)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("check_data")
    clean = write_synthetic_task(
        base / "clean", SyntheticTaskSpec(1, INSTRUCTION), num_episodes=NUM_EPISODES, min_len=8, max_len=12, image_hw=HW
    )
    video = write_synthetic_task(
        base / "video",
        SyntheticTaskSpec(4, WALK_INSTRUCTION, action_dim=20),
        num_episodes=2,
        min_len=8,
        max_len=10,
        image_hw=HW,
        video=True,
    )
    lengths = [json.loads(line)["length"] for line in (clean / "meta" / "episodes.jsonl").read_text().splitlines()]
    return {"base": base, "clean": clean, "video": video, "lengths": lengths, "digest": tree_digest(clean)}


@pytest.fixture
def broken(datasets, tmp_path):
    """A copy of the clean dataset to break."""
    return Path(shutil.copytree(datasets["clean"], tmp_path / "broken"))


EXPECT_CLEAN = dict(
    expected_state_dim=16,
    expected_action_dim=16,
    expected_cameras=list(CAMERA_KEYS),
    expected_fps=10,
    instruction=INSTRUCTION,
)


# ----------------------------------------------------------------------------------------------
# Clean datasets
# ----------------------------------------------------------------------------------------------


def test_clean_image_dataset_has_no_problems_and_a_correct_summary(datasets):
    report = check(datasets["clean"], **EXPECT_CLEAN)
    lengths = datasets["lengths"]
    assert report.problems == []
    assert report.ok
    assert report.version == "v2.1" and report.fps == 10
    assert report.episodes == NUM_EPISODES and report.frames == sum(lengths) == report.frames_read
    assert (report.episode_lengths.min, report.episode_lengths.max) == (min(lengths), max(lengths))
    assert report.episode_lengths.mean == pytest.approx(np.mean(lengths))
    assert report.state_dim == 16 and report.action_dim == 16
    assert [c.key for c in report.cameras] == list(CAMERA_KEYS)
    assert {(c.storage, c.height, c.width) for c in report.cameras} == {("image", *HW)}
    assert report.features[STATE].dtype == "float32" and report.features[STATE].shape == (16,)
    assert report.features[CAMERA_KEYS[0]].shape == (3, *HW)
    assert report.nan_counts == {STATE: 0, ACTION: 0} and report.inf_counts == {STATE: 0, ACTION: 0}
    assert report.dataset_tasks == {INSTRUCTION: NUM_EPISODES}
    assert report.depth_keys == [] and not report.leftover_images
    assert report.notes == []

    text = format_report(report)
    assert f"episodes: {NUM_EPISODES}, frames: {sum(lengths)}" in text
    assert "state dim: 16, action dim: 16" in text
    assert "v2.1, 10 fps" in text
    assert f"min/mean/max {min(lengths)}/" in text
    for camera in CAMERA_KEYS:
        assert re.search(rf"{re.escape(camera)}\s+image\s+24x32\n", text), text
    assert "result: OK" in text


def test_video_dataset_is_reported_as_video(datasets):
    report = check(datasets["video"], expected_action_dim=20, expected_cameras=list(CAMERA_KEYS), expected_fps=10)
    assert report.problems == []
    assert report.storage == "video"
    assert {(c.storage, c.height, c.width) for c in report.cameras} == {("video", *HW)}
    assert all(c.codec for c in report.cameras)
    assert report.action_dim == 20
    text = format_report(report)
    assert "stored as video" in text
    assert re.search(rf"{re.escape(CAMERA_KEYS[0])}\s+video\s+24x32, codec \w+", text), text


def test_depth_columns_and_leftover_images_are_notes_not_problems(datasets):
    root = write_synthetic_task(
        datasets["base"] / "depth",
        SyntheticTaskSpec(2, "Weigh it"),
        num_episodes=2,
        min_len=6,
        max_len=8,
        image_hw=HW,
        with_depth=True,
        leftover_images=True,
    )
    report = check(root, **{**EXPECT_CLEAN, "instruction": "Weigh it"})
    assert report.problems == []
    assert report.depth_keys == ["observation.depth_h", "observation.depth_l", "observation.depth_r"]
    assert report.leftover_images
    assert any("observation.depth_h" in n and "dropped" in n and "data.keep_depth" in n for n in report.notes)
    assert any(str(root / "images") in n for n in report.notes)
    assert "(depth, dropped by default)" in format_report(report)


def test_dataset_task_string_differing_from_the_instruction_is_a_note(datasets):
    report = check(datasets["clean"], instruction="Sort the parcels")
    assert report.problems == []
    note = next(n for n in report.notes if "differs from the instruction" in n)
    assert INSTRUCTION[:40] in note and "Sort the parcels" in note and f"{NUM_EPISODES} episode(s)" in note


def test_v30_dataset_is_checked_too(datasets, tmp_path):
    from kuavo_train.data.ingest import ingest_dataset

    converted = ingest_dataset(datasets["clean"], tmp_path / "cache")
    report = check(converted, **EXPECT_CLEAN)
    assert report.problems == []
    assert report.version == "v3.0"
    assert report.episodes == NUM_EPISODES and report.frames_read == sum(datasets["lengths"])
    assert report.episode_lengths.max == max(datasets["lengths"])
    assert report.dataset_tasks == {INSTRUCTION: NUM_EPISODES}


# ----------------------------------------------------------------------------------------------
# Fatal defects: one-line KuavoError
# ----------------------------------------------------------------------------------------------


def fatal(root: Path, *needles: str) -> str:
    with pytest.raises(KuavoError) as info:
        check_dataset(root)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_missing_dir_is_fatal(tmp_path):
    fatal(tmp_path / "nowhere", str(tmp_path / "nowhere"), "does not exist")


def test_dir_without_info_json_is_not_a_lerobot_dataset(broken):
    (broken / "meta" / "info.json").unlink()
    before = tree_digest(broken)
    fatal(broken, "is not a LeRobot dataset", str(broken / "meta" / "info.json"))
    assert tree_digest(broken) == before


@pytest.mark.parametrize("version", ["v2.0", "v1.6"])
def test_unsupported_version_is_fatal(broken, version):
    edit_info(broken, codebase_version=version)
    fatal(broken, version, str(broken / "meta" / "info.json"), "re-export")


def test_empty_dataset_is_fatal(broken):
    edit_info(broken, total_episodes=0, total_frames=0)
    for name in ("episodes.jsonl", "episodes_stats.jsonl"):
        (broken / "meta" / name).write_text("")
    shutil.rmtree(broken / "data")
    fatal(broken, str(broken), "no episodes")


def test_feature_without_dtype_is_a_one_line_error(broken):
    info = json.loads((broken / "meta" / "info.json").read_text())
    del info["features"][STATE]["dtype"]
    (broken / "meta" / "info.json").write_text(json.dumps(info))
    fatal(broken, "observation.state", "dtype")


# ----------------------------------------------------------------------------------------------
# Per-file defects: collected as problems
# ----------------------------------------------------------------------------------------------


def test_missing_required_camera(broken):
    info = json.loads((broken / "meta" / "info.json").read_text())
    del info["features"][CAMERA_KEYS[2]]
    (broken / "meta" / "info.json").write_text(json.dumps(info))
    report = check(broken, expected_cameras=list(CAMERA_KEYS))
    problem_with(
        report,
        str(broken / "meta" / "info.json"),
        f"required camera '{CAMERA_KEYS[2]}' is missing",
        "task.data.cameras",
    )
    assert len(report.problems) == 1
    # An unknown camera asked for on a clean dataset is reported the same way.
    report = check(broken, expected_cameras=["observation.images.chest_cam"])
    problem_with(report, "observation.images.chest_cam")


def test_wrong_state_dim(datasets):
    report = check(datasets["clean"], expected_state_dim=14)
    message = problem_with(report, str(datasets["clean"] / "meta" / "info.json"), "observation.state has 16 dims", "14")
    assert "state_dim" in message
    assert len(report.problems) == 1


def test_wrong_action_dim(datasets):
    report = check(datasets["clean"], expected_action_dim=20)
    problem_with(
        report, str(datasets["clean"] / "meta" / "info.json"), "action has 16 dims", "20 are expected", "action_dim"
    )
    assert len(report.problems) == 1


def test_data_rows_disagreeing_with_the_declared_dim(broken):
    info = json.loads((broken / "meta" / "info.json").read_text())
    info["features"][STATE]["shape"] = [14]
    (broken / "meta" / "info.json").write_text(json.dumps(info))
    report = check(broken)
    assert report.state_dim == 14
    problem_with(report, str(episode_file(broken, 0)), "observation.state rows have 16 values", "declares 14")


def test_corrupt_parquet_names_the_file(broken, datasets):
    bad = episode_file(broken, 1)
    bad.write_bytes(b"this is not a parquet file" * 100)
    report = check(broken)
    message = problem_with(report, str(bad), "cannot be read as parquet", "re-export")
    assert report.unreadable_files == [str(bad)]
    assert len(report.problems) == 1, report.problems
    assert "corrupt or truncated" in message
    assert report.frames_read == sum(datasets["lengths"]) - datasets["lengths"][1]


def test_truncated_parquet_names_the_file(broken):
    bad = episode_file(broken, 2)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    report = check(broken)
    problem_with(report, str(bad), "cannot be read as parquet", "re-export")
    assert report.unreadable_files == [str(bad)]
    assert "1 problem(s)" in format_report(report)


def test_nan_in_state_names_the_episode_file_and_count(broken):
    poke(episode_file(broken, 3), STATE, row=2, dim=5, value=np.nan)
    report = check(broken)
    problem_with(report, str(episode_file(broken, 3)), "observation.state holds 1 NaN", "episode 3, first at frame 2")
    assert report.nan_counts == {STATE: 1, ACTION: 0}
    assert len(report.problems) == 1


def test_inf_in_action_names_the_episode_file_and_count(broken):
    poke(episode_file(broken, 0), ACTION, row=1, dim=0, value=np.inf)
    poke(episode_file(broken, 0), ACTION, row=4, dim=3, value=-np.inf)
    report = check(broken)
    problem_with(report, str(episode_file(broken, 0)), "action holds 2 inf", "episode 0")
    assert report.inf_counts == {STATE: 0, ACTION: 2} and report.nan_counts[ACTION] == 0
    assert "action 0 NaN / 2 inf" in format_report(report)


def test_fps_other_than_expected(datasets):
    report = check(datasets["clean"], expected_fps=30)
    problem_with(report, str(datasets["clean"] / "meta" / "info.json"), "fps is 10 but 30 is expected")


def test_fps_mismatch_between_datasets(datasets, broken):
    edit_info(broken, fps=15)
    reports = check_datasets([datasets["clean"], broken])
    assert reports[0].problems == []
    message = problem_with(
        reports[1], str(broken / "meta" / "info.json"), "fps 15 differs from fps 10", str(datasets["clean"])
    )
    assert "\n" not in message


def test_missing_video_file(datasets, tmp_path):
    root = Path(shutil.copytree(datasets["video"], tmp_path / "video"))
    missing = root / "videos" / "chunk-000" / CAMERA_KEYS[1] / "episode_000001.mp4"
    missing.unlink()
    report = check(root)
    problem_with(report, str(missing), CAMERA_KEYS[1], "missing", "videos/")
    assert len(report.problems) == 1


def test_episode_length_disagreeing_with_episodes_jsonl(broken, datasets):
    path = broken / "meta" / "episodes.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["length"] += 5
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = check(broken)
    problem_with(report, str(episode_file(broken, 1)), f"holds {datasets['lengths'][1]} frames", "episodes.jsonl")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "kuavo_train", "check-data", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_exit_codes_and_output(datasets, tmp_path):
    clean = datasets["clean"]
    ok = run_cli(
        str(clean),
        "--state-dim",
        "16",
        "--action-dim",
        "16",
        "--cameras",
        "head_cam_h,wrist_cam_l,wrist_cam_r",
        "--fps",
        "10",
    )
    assert ok.returncode == 0, ok.stderr
    assert (
        f"Dataset {clean}" in ok.stdout and f"episodes: {NUM_EPISODES}, frames: {sum(datasets['lengths'])}" in ok.stdout
    )
    assert "result: OK" in ok.stdout

    bad = run_cli(str(clean), "--state-dim", "14", "--cameras", "head_cam_h,chest_cam")
    assert bad.returncode == 1, bad.stderr
    assert "observation.state has 16 dims" in bad.stdout and "observation.images.chest_cam" in bad.stdout
    assert "2 problem(s)" in bad.stdout

    missing = run_cli(str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    error_lines = [line for line in missing.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and str(tmp_path / "nowhere") in error_lines[0]
    assert "Traceback" not in missing.stderr
    assert tree_digest(clean) == datasets["digest"]


def test_cli_bad_arguments_exit_2(capsys):
    from kuavo_train.cli import main

    assert main(["check-data"]) == 2
    assert "error: give at least one dataset dir" in capsys.readouterr().err
    assert main(["check-data", "x", "--state-dim", "zero"]) == 2
    assert "--state-dim" in capsys.readouterr().err


def test_cli_several_roots_reports_fps_mismatch(datasets, broken, capsys):
    edit_info(broken, fps=15)
    assert check_data_main([str(datasets["clean"]), str(broken)]) == 1
    out = capsys.readouterr().out
    assert "fps 15 differs from fps 10" in out
    assert "checked 2 dataset(s): 1 problem(s)" in out


def test_cli_checks_every_task_of_a_config(datasets, capsys):
    clean, video = datasets["clean"], datasets["video"]
    roots = [f"data.roots.{name}={clean}" for name in ("moving_grasp", "weighing", "placement")]
    assert check_data_main(["--config-name", "smolvla_sequential_demo", *roots, f"data.roots.sorting={video}"]) == 0
    out = capsys.readouterr().out
    assert f"task 1 (moving_grasp): {clean}" in out and f"task 4 (sorting): {video}" in out
    assert "checked 4 dataset(s): 0 problem(s)" in out
    assert "differs from the instruction" in out  # tasks 2 and 3 train with their own instruction

    # Task 4 expects a 20-dim action: a 16-dim dataset there is a problem.
    assert check_data_main(["--config-name", "smolvla_sequential_demo", *roots, f"data.roots.sorting={clean}"]) == 1
    out = capsys.readouterr().out
    assert "action has 16 dims but 20 are expected" in out


def test_source_dataset_is_never_modified(datasets):
    check_datasets([datasets["clean"], datasets["video"]], **{**EXPECT_CLEAN, "expected_action_dim": None})
    assert tree_digest(datasets["clean"]) == datasets["digest"]
