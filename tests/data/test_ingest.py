import hashlib
from pathlib import Path

import pytest

from kuavo_train.data.ingest import ingest_dataset
from kuavo_train.data.source import read_source_info
from kuavo_train.demo.synthetic import SyntheticTaskSpec, write_synthetic_task
from kuavo_train.errors import KuavoError

SPEC = SyntheticTaskSpec(task_id=4, instruction="Move from the starting point to the rack", action_dim=20)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}|{stat.st_mtime_ns}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def load(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(
        "kuavo/test", root=root, episodes=[0, 1], delta_timestamps={"action": [0.0, 0.1]}, video_backend="pyav"
    )


@pytest.mark.parametrize("video", [False, True], ids=["image-in-parquet", "video"])
def test_v21_is_converted_into_a_readable_cache_without_touching_the_source(tmp_path, video):
    source = write_synthetic_task(
        tmp_path / "src",
        SPEC,
        num_episodes=3,
        min_len=12,
        max_len=16,
        image_hw=(24, 32),
        video=video,
        with_depth=True,
        leftover_images=True,
    )
    before = tree_digest(source)
    converted = ingest_dataset(source, tmp_path / "cache")
    assert tree_digest(source) == before
    assert read_source_info(converted).version == "v3.0"
    item = load(converted)[0]
    for camera in ("observation.images.head_cam_h", "observation.images.wrist_cam_l", "observation.images.wrist_cam_r"):
        assert tuple(item[camera].shape) == (3, 24, 32)
    assert tuple(item["observation.state"].shape) == (16,)
    assert tuple(item["action"].shape) == (2, 20)
    assert not any(key.startswith("observation.depth") for key in item)


def test_second_ingest_reuses_the_cache(tmp_path):
    source = write_synthetic_task(tmp_path / "src", SPEC, num_episodes=2, min_len=10, max_len=12, image_hw=(24, 32))
    first = ingest_dataset(source, tmp_path / "cache")
    stamp = (first / "kuavo_ingest.json").stat().st_mtime_ns
    assert ingest_dataset(source, tmp_path / "cache") == first
    assert (first / "kuavo_ingest.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]


def test_v30_source_is_used_in_place(tmp_path):
    source = write_synthetic_task(tmp_path / "src", SPEC, num_episodes=2, min_len=10, max_len=12, image_hw=(24, 32))
    converted = ingest_dataset(source, tmp_path / "cache")
    assert ingest_dataset(converted, tmp_path / "other_cache") == converted


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "is not a LeRobot dataset"),
    ],
)
def test_bad_roots(tmp_path, breakage, message):
    root = tmp_path / "data"
    breakage(root)
    with pytest.raises(KuavoError, match=message):
        ingest_dataset(root, tmp_path / "cache")


def test_unsupported_version(tmp_path):
    import json

    source = write_synthetic_task(tmp_path / "src", SPEC, num_episodes=2, min_len=10, max_len=12, image_hw=(24, 32))
    info = json.loads((source / "meta/info.json").read_text())
    info["codebase_version"] = "v2.0"
    (source / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(KuavoError, match="codebase_version 'v2.0' is not supported"):
        ingest_dataset(source, tmp_path / "cache")


def test_conversion_says_one_line_per_dataset_and_lerobots_warning_once(tmp_path, capfd, caplog):
    from kuavo_train.data import ingest

    ingest._SayOnce.said = False
    sources = [
        write_synthetic_task(tmp_path / f"src{i}", SPEC, num_episodes=2, min_len=12, max_len=14, image_hw=(24, 32))
        for i in range(2)
    ]
    with caplog.at_level("WARNING"):
        for source in sources:
            ingest_dataset(source, tmp_path / "cache")
    out, err = capfd.readouterr()
    assert out.count("converting ") == 2 and out.count("converted in") == 2
    assert "convert data files" not in err and "Generating train split" not in err
    unknown = [
        r.getMessage()
        for r in caplog.records
        if "DatasetInfo" in r.getMessage() or "info.json fields" in r.getMessage()
    ]
    assert len(unknown) == 1 and "harmless" in unknown[0]
