"""Tests for kuavo_train.demo.synthetic: Kuavo-format (LeRobot v2.1) synthetic datasets."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from kuavo_train.demo.synthetic import (
    CAMERA_KEYS,
    DEPTH_KEYS,
    JOINT_NAMES,
    SyntheticTaskSpec,
    choose_video_codec,
    episode_conditions,
    expert_action,
    expert_action_chunk,
    load_generation_info,
    render_head_image,
    task_targets,
    write_synthetic_task,
)
from kuavo_train.demo.synthetic.expert import _BASE
from kuavo_train.demo.synthetic.writer import main as synthetic_main
from kuavo_train.errors import KuavoError

INSTR = {
    1: "Pick up the moving object from the conveyor belt, place it on the table, and push it to the designated area",
    2: "Pick up the package from the conveyor belt, weigh it on the electronic scale, then pick it up again and "
    "place it in the designated storage container",
}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _episode_table(root: Path, ep: int) -> pa.Table:
    return pq.read_table(root / f"data/chunk-000/episode_{ep:06d}.parquet")


def _inventory(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def image_ds(tmp_path_factory) -> Path:
    """Default settings: 12 episodes of 40..60 frames, 48x64 PNGs inside the parquet."""
    return write_synthetic_task(tmp_path_factory.mktemp("img") / "task1", SyntheticTaskSpec(1, INSTR[1]))


@pytest.fixture(autouse=True)
def _hf_cache_in_tmp(tmp_path, monkeypatch):
    """Keep HF datasets' arrow cache (used by lerobot's conversion and loader) out of the home dir."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ------------------------------------------------------------------------------------------------
# Layout and metadata
# ------------------------------------------------------------------------------------------------


def test_v21_layout_and_meta(image_ds):
    root = image_ds
    info = json.loads((root / "meta/info.json").read_text())
    episodes = _read_jsonl(root / "meta/episodes.jsonl")
    tasks = _read_jsonl(root / "meta/tasks.jsonl")
    stats = _read_jsonl(root / "meta/episodes_stats.jsonl")

    assert info["codebase_version"] == "v2.1"
    assert info["fps"] == 10 and info["robot_type"] == "kuavo4pro"
    assert info["total_episodes"] == 12 and info["total_tasks"] == 1
    assert info["total_chunks"] == 1 and info["chunks_size"] == 1000 and info["total_videos"] == 0
    assert info["splits"] == {"train": "0:12"}
    assert info["data_path"] == "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    assert info["video_path"] == "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

    feats = info["features"]
    expected_keys = [
        "observation.state",
        "action",
        *CAMERA_KEYS,
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ]
    assert list(feats) == expected_keys
    assert feats["observation.state"] == {"dtype": "float32", "shape": [16], "names": list(JOINT_NAMES)}
    assert feats["action"]["shape"] == [16]
    assert JOINT_NAMES[:8] == (*(f"zarm_l{i}" for i in range(1, 8)), "gripper_l")
    assert JOINT_NAMES[8:] == (*(f"zarm_r{i}" for i in range(1, 8)), "gripper_r")
    for cam in CAMERA_KEYS:
        assert feats[cam] == {"dtype": "image", "shape": [3, 48, 64], "names": ["channels", "height", "width"]}
    for key in ("frame_index", "episode_index", "index", "task_index"):
        assert feats[key] == {"dtype": "int64", "shape": [1], "names": None}
    assert feats["timestamp"]["dtype"] == "float32"

    assert tasks == [{"task_index": 0, "task": INSTR[1]}]
    assert [e["episode_index"] for e in episodes] == list(range(12))
    assert all(e["tasks"] == [INSTR[1]] for e in episodes)
    lengths = [e["length"] for e in episodes]
    assert all(40 <= n <= 60 for n in lengths) and len(set(lengths)) > 3  # lengths vary
    assert info["total_frames"] == sum(lengths)

    assert [s["episode_index"] for s in stats] == list(range(12))
    for s, n in zip(stats, lengths, strict=True):
        st = s["stats"]
        assert set(st) == set(feats)  # every feature, like lerobot v2.1
        for cam in CAMERA_KEYS:
            for k in ("min", "max", "mean", "std"):
                arr = np.array(st[cam][k])
                assert arr.shape == (3, 1, 1) and (arr >= 0).all() and (arr <= 1).all()
            assert st[cam]["count"] == [n]
        for key in ("observation.state", "action"):
            assert np.array(st[key]["mean"]).shape == (16,)
            assert st[key]["count"] == [n]
        assert np.array(st["timestamp"]["max"]).shape == (1,)

    assert sorted(p.name for p in (root / "data/chunk-000").iterdir()) == [
        f"episode_{i:06d}.parquet" for i in range(12)
    ]
    assert not (root / "videos").exists() and not (root / "images").exists()


def test_parquet_dtypes_shapes_and_values(image_ds):
    root = image_ds
    info = json.loads((root / "meta/info.json").read_text())
    episodes = _read_jsonl(root / "meta/episodes.jsonl")
    stats = _read_jsonl(root / "meta/episodes_stats.jsonl")
    start = 0
    for ep in (0, 1, 11):
        table = _episode_table(root, ep)
        schema = table.schema
        assert schema.names == list(info["features"])
        assert schema.field("observation.state").type == pa.list_(pa.float32(), 16)
        assert schema.field("action").type == pa.list_(pa.float32(), 16)
        for cam in CAMERA_KEYS:
            assert schema.field(cam).type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        assert schema.field("timestamp").type == pa.float32()
        for key in ("frame_index", "episode_index", "index", "task_index"):
            assert schema.field(key).type == pa.int64()
        assert b"huggingface" in schema.metadata  # HF datasets features, as lerobot v2.1 wrote them

        n = episodes[ep]["length"]
        assert table.num_rows == n
        col = table.to_pydict()
        start = sum(e["length"] for e in episodes[:ep])
        np.testing.assert_array_equal(col["frame_index"], np.arange(n))
        np.testing.assert_array_equal(col["index"], np.arange(start, start + n))
        assert set(col["episode_index"]) == {ep} and set(col["task_index"]) == {0}
        np.testing.assert_allclose(col["timestamp"], np.arange(n) / 10, atol=1e-6)
        state = np.array(col["observation.state"])
        assert np.abs(state).max() < 1.5
        assert col[CAMERA_KEYS[0]][0]["path"] is None
        np.testing.assert_allclose(stats[ep]["stats"]["observation.state"]["mean"], state.mean(0), atol=1e-5)


def test_images_decode_to_right_size_and_show_goal(image_ds):
    table = _episode_table(image_ds, 0).to_pydict()
    goal = load_generation_info(image_ds)["episodes"][0]["goal"]
    for cam in CAMERA_KEYS:
        img = Image.open(io.BytesIO(table[cam][5]["bytes"]))
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (64, 48)
    head = np.asarray(Image.open(io.BytesIO(table[CAMERA_KEYS[0]][0]["bytes"])))
    np.testing.assert_array_equal(head, render_head_image(goal, (48, 64)))
    # the tint encodes the goal: corner pixel R, G levels = 0.5 + 0.4 g
    corner = head[0, 0] / 255.0 if abs(goal[0]) < 0.5 else head[-1, -1] / 255.0
    if not (corner == 1.0).all():
        np.testing.assert_allclose(corner[:2], 0.5 + 0.4 * np.array(goal), atol=0.01)
    # wrist brightness follows the gripper
    state = np.array(table["observation.state"])
    left = [np.asarray(Image.open(io.BytesIO(b["bytes"]))).mean() for b in table[CAMERA_KEYS[1]]]
    assert np.corrcoef(left, state[:, 7])[0, 1] > 0.95


def test_real_resolution_option(tmp_path):
    root = write_synthetic_task(
        tmp_path / "big", SyntheticTaskSpec(2, INSTR[2]), num_episodes=1, min_len=3, max_len=3, image_hw=(480, 640)
    )
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"][CAMERA_KEYS[0]]["shape"] == [3, 480, 640]
    img = Image.open(io.BytesIO(_episode_table(root, 0).to_pydict()[CAMERA_KEYS[2]][0]["bytes"]))
    assert img.size == (640, 480)


# ------------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------------


def test_video_mode(tmp_path):
    import av

    root = write_synthetic_task(
        tmp_path / "vid", SyntheticTaskSpec(4, "walk", 20), num_episodes=2, min_len=12, max_len=16, video=True
    )
    info = json.loads((root / "meta/info.json").read_text())
    episodes = _read_jsonl(root / "meta/episodes.jsonl")
    encoder, codec = choose_video_codec()
    assert info["total_videos"] == 6
    videos = sorted((root / "videos").rglob("*.mp4"))
    assert len(videos) == 6
    for cam in CAMERA_KEYS:
        ft = info["features"][cam]
        assert ft["dtype"] == "video" and ft["shape"] == [3, 48, 64]
        assert ft["info"]["video.codec"] == codec and ft["info"]["video.fps"] == 10.0
        assert ft["info"]["video.height"] == 48 and ft["info"]["video.width"] == 64
        for ep in range(2):
            path = root / f"videos/chunk-000/{cam}/episode_{ep:06d}.mp4"
            assert path.is_file()
            with av.open(str(path)) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert len(frames) == episodes[ep]["length"]
            assert frames[0].shape == (48, 64, 3)
    # parquet holds no image columns in video mode
    table = _episode_table(root, 0)
    assert not set(CAMERA_KEYS) & set(table.schema.names)
    assert table.schema.field("action").type == pa.list_(pa.float32(), 20)
    # head video shows the goal tint (lossy codec: loose tolerance)
    goal = load_generation_info(root)["episodes"][0]["goal"]
    with av.open(str(root / f"videos/chunk-000/{CAMERA_KEYS[0]}/episode_000000.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    expected = render_head_image(goal, (48, 64)).astype(float)
    assert np.abs(first - expected).mean() < 12


def test_depth_columns_legacy_names_and_leftover_images(tmp_path):
    root = write_synthetic_task(
        tmp_path / "d",
        SyntheticTaskSpec(3, "place"),
        num_episodes=2,
        min_len=5,
        max_len=8,
        with_depth=True,
        legacy_names=True,
        leftover_images=True,
    )
    info = json.loads((root / "meta/info.json").read_text())
    feats = info["features"]
    assert feats["observation.state"]["names"] == {"motors": list(JOINT_NAMES)}
    for key in DEPTH_KEYS:
        assert feats[key] == {"dtype": "uint16", "shape": [1, 48, 64], "names": ["channels", "height", "width"]}
    table = _episode_table(root, 0)
    for key in DEPTH_KEYS:
        ftype = table.schema.field(key).type  # datasets' Array3D extension type once `datasets` is imported
        assert getattr(ftype, "storage_type", ftype) == pa.list_(pa.list_(pa.list_(pa.uint16())))
        depth = np.array(table.column(key).to_pylist()[0])
        assert depth.shape == (1, 48, 64) and depth.min() > 0
    stats = _read_jsonl(root / "meta/episodes_stats.jsonl")[0]["stats"]
    assert np.array(stats["observation.depth_h"]["mean"]).shape == (1, 1, 1)
    pngs = sorted((root / "images").rglob("*.png"))
    assert len(pngs) == 9
    assert pngs[0].relative_to(root).as_posix().startswith("images/observation.images.head_cam_h/episode_000000/")


def test_walking_task_action(tmp_path):
    root = write_synthetic_task(
        tmp_path / "w", SyntheticTaskSpec(4, "walk", 20), num_episodes=2, min_len=40, max_len=40
    )
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"]["action"]["names"][16:] == ["cmd_pos_x", "cmd_pos_y", "cmd_pos_yaw", "ctrl_change_cmd"]
    action = np.array(_episode_table(root, 0).column("action").to_pylist())
    assert action.shape == (40, 20)
    assert set(np.unique(action[:, 19])) <= {0.0, 1.0}
    assert action[0, 19] == 0.0 and action[-1, 19] == 1.0  # stage switch happens within the episode
    # walking commands are task specific too
    g = np.array([0.5, -0.3])
    s = episode_conditions(0, 0)["state0"]
    assert (
        np.abs(expert_action(4, s, g, action_dim=20)[16:19] - expert_action(1, s, g, action_dim=20)[16:19]).max() > 0.2
    )


def test_invalid_arguments(tmp_path):
    with pytest.raises(KuavoError):
        write_synthetic_task(tmp_path / "a", SyntheticTaskSpec(0, "x"))
    with pytest.raises(KuavoError):
        write_synthetic_task(tmp_path / "a", SyntheticTaskSpec(1, "x", 17))
    with pytest.raises(KuavoError):
        write_synthetic_task(tmp_path / "a", SyntheticTaskSpec(1, "x"), min_len=10, max_len=5)
    with pytest.raises(KuavoError):
        write_synthetic_task(tmp_path / "a", SyntheticTaskSpec(1, "x"), image_hw=(47, 64), video=True)
    assert not (tmp_path / "a").exists()


# ------------------------------------------------------------------------------------------------
# Determinism, atomicity, never overwriting
# ------------------------------------------------------------------------------------------------


def test_deterministic_for_a_seed(tmp_path):
    kw = dict(num_episodes=3, min_len=10, max_len=20)
    a = write_synthetic_task(tmp_path / "a", SyntheticTaskSpec(2, INSTR[2]), seed=7, **kw)
    b = write_synthetic_task(tmp_path / "b", SyntheticTaskSpec(2, INSTR[2]), seed=7, **kw)
    c = write_synthetic_task(tmp_path / "c", SyntheticTaskSpec(2, INSTR[2]), seed=8, **kw)
    inv_a, inv_b = _inventory(a), _inventory(b)
    assert inv_a == inv_b  # byte-identical files, parquet included
    for ep in range(3):
        assert _episode_table(a, ep).equals(_episode_table(b, ep))
    assert not _episode_table(a, 0).column("action").equals(_episode_table(c, 0).column("action"))
    assert not any(p.name.startswith(".a.tmp-") for p in tmp_path.iterdir())  # temp dir renamed away


def test_refuses_to_overwrite_and_reuses_identical_generation(tmp_path):
    kw = dict(num_episodes=2, min_len=5, max_len=6)
    root = write_synthetic_task(tmp_path / "ds", SyntheticTaskSpec(1, "x"), **kw)
    before = _inventory(root)
    # identical generation: returned as is
    assert write_synthetic_task(tmp_path / "ds", SyntheticTaskSpec(1, "x"), **kw) == root
    assert _inventory(root) == before
    # different parameters into the same dir: refused, nothing touched
    with pytest.raises(KuavoError, match="refusing to overwrite"):
        write_synthetic_task(tmp_path / "ds", SyntheticTaskSpec(1, "x"), seed=1, **kw)
    assert _inventory(root) == before
    # tampered generation: refused
    (root / "meta/tasks.jsonl").write_text('{"task_index": 0, "task": "edited by user"}\n')
    with pytest.raises(KuavoError):
        write_synthetic_task(tmp_path / "ds", SyntheticTaskSpec(1, "x"), **kw)
    # a foreign non-empty dir: refused, user file intact
    foreign = tmp_path / "user"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(KuavoError):
        write_synthetic_task(foreign, SyntheticTaskSpec(1, "x"), **kw)
    assert [p.name for p in foreign.iterdir()] == ["precious.txt"]
    assert (foreign / "precious.txt").read_text() == "keep me"
    # a file in the way: refused
    (tmp_path / "afile").write_text("x")
    with pytest.raises(KuavoError):
        write_synthetic_task(tmp_path / "afile", SyntheticTaskSpec(1, "x"), **kw)
    # an existing empty dir is fine
    (tmp_path / "empty").mkdir()
    assert (write_synthetic_task(tmp_path / "empty", SyntheticTaskSpec(1, "x"), **kw) / "meta/info.json").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = synthetic_main(
        [
            "--out",
            str(out),
            "--task-id",
            "4",
            "--instruction",
            "walk",
            "--action-dim",
            "20",
            "--episodes",
            "2",
            "--min-len",
            "5",
            "--max-len",
            "6",
        ]
    )
    assert rc == 0 and capsys.readouterr().out.strip() == str(out)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["features"]["action"]["shape"] == [20] and info["total_episodes"] == 2
    rc = synthetic_main(["--out", str(out), "--task-id", "1", "--instruction", "other", "--episodes", "2"])
    assert rc == 2 and "refusing to overwrite" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# The generating rule: learnable, and conflicting between tasks
# ------------------------------------------------------------------------------------------------


def test_recorded_actions_follow_the_expert_rule(image_ds):
    goals = [e["goal"] for e in load_generation_info(image_ds)["episodes"]]
    errs_first, errs_chunk = [], []
    for ep in range(4):
        col = _episode_table(image_ds, ep).to_pydict()
        state, action = np.array(col["observation.state"]), np.array(col["action"])
        np.testing.assert_allclose(state[1:], action[:-1], atol=1e-6)  # s_{t+1} = a_t
        pred = expert_action(1, state, goals[ep])
        errs_first.append(np.abs(pred - action).max(axis=1))
        chunk = expert_action_chunk(1, state[0], goals[ep], horizon=len(action))
        errs_chunk.append(np.abs(chunk - action).mean())
    assert np.median(np.concatenate(errs_first)) < 0.02  # noise std 0.005 per dim
    # open-loop from t=0 over the whole episode: accumulated small noise, and a stage switch that may come
    # one step earlier/later than in the noisy recording
    assert max(errs_chunk) < 0.03


def test_tasks_share_observation_distribution_but_conflict(tmp_path):
    kw = dict(num_episodes=3, min_len=8, max_len=10)
    roots = {k: write_synthetic_task(tmp_path / f"t{k}", SyntheticTaskSpec(k, f"task {k}"), **kw) for k in (1, 2, 3, 4)}
    # same seed -> identical goals and initial observations (state + images) for every task
    t0 = {k: _episode_table(r, 0).slice(0, 1).select(["observation.state", *CAMERA_KEYS]) for k, r in roots.items()}
    assert all(t0[k].equals(t0[1]) for k in (2, 3, 4))
    goals = {k: load_generation_info(r)["episodes"] for k, r in roots.items()}
    assert all(goals[k] == goals[1] for k in (2, 3, 4))

    # reach targets have the same distribution for tasks 1..4 (goal rotations by multiples of 90 deg
    # preserve the uniform square), so states do not reveal the task either
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)), -1).reshape(-1, 2)
    sorted_t1 = {k: np.sort(task_targets(k, grid)["T1"], axis=0) for k in (1, 2, 3, 4)}
    for k in (2, 3, 4):
        np.testing.assert_allclose(sorted_t1[k], sorted_t1[1], atol=1e-9)

    # ... but the action chunk for the same observation differs strongly between tasks
    rng = np.random.default_rng(0)
    g = rng.uniform(-1, 1, (256, 2))
    s = np.stack([episode_conditions(0, i)["state0"] for i in range(256)])
    chunks = {k: expert_action_chunk(k, s, g) for k in (1, 2, 3, 4)}
    scale = np.concatenate([c.reshape(-1, 16) for c in chunks.values()]).std(0)

    def nmse(a, b):
        return float((((a - b) / scale) ** 2).mean())

    assert nmse(chunks[2], chunks[1]) > 1.0  # task 2 is the opposite of task 1
    for i in (1, 2, 3, 4):
        for j in (1, 2, 3, 4):
            if i != j:
                assert nmse(chunks[i], chunks[j]) > 0.5
    # an instruction-blind predictor (best it can do at t=0 is the mean over tasks) fits none of them
    blind = np.mean([chunks[k] for k in chunks], axis=0)
    assert min(nmse(blind, chunks[k]) for k in chunks) > 0.3
    # task 1's reach target is the mirror of task 2's around the shared bias
    t1, t2 = task_targets(1, g)["T1"], task_targets(2, g)["T1"]
    bias = _BASE["L1"][:, 2]
    np.testing.assert_allclose(t1 - bias, -(t2 - bias), atol=1e-12)


def test_any_task_id_works():
    g, s = np.array([0.3, 0.7]), episode_conditions(0, 0)["state0"]
    chunks = [expert_action_chunk(k, s, g, horizon=30) for k in range(1, 13)]
    for i in range(len(chunks)):
        for j in range(i + 1, len(chunks)):
            assert np.abs(chunks[i] - chunks[j]).max() > 0.05
    assert chunks[0].shape == (30, 16) and chunks[0].dtype == np.float32


# ------------------------------------------------------------------------------------------------
# lerobot's own v2.1 -> v3.0 step functions, then LeRobotDataset
# ------------------------------------------------------------------------------------------------


def _convert_v21_to_v30(src: Path, dst: Path) -> None:
    """Drive lerobot's step functions like ``convert_dataset`` does, but into a new dir (never move ``src``)."""
    from lerobot.datasets.utils import DEFAULT_DATA_FILE_SIZE_IN_MB, DEFAULT_VIDEO_FILE_SIZE_IN_MB
    from lerobot.scripts.convert_dataset_v21_to_v30 import (
        convert_data,
        convert_episodes_metadata,
        convert_info,
        convert_tasks,
        convert_videos,
    )

    convert_info(src, dst, DEFAULT_DATA_FILE_SIZE_IN_MB, DEFAULT_VIDEO_FILE_SIZE_IN_MB)
    convert_tasks(src, dst)
    episodes_metadata = convert_data(src, dst, DEFAULT_DATA_FILE_SIZE_IN_MB)
    episodes_videos_metadata = convert_videos(src, dst, DEFAULT_VIDEO_FILE_SIZE_IN_MB)
    convert_episodes_metadata(src, dst, episodes_metadata, episodes_videos_metadata)


def test_lerobot_conversion_image_mode(image_ds, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    before = _inventory(image_ds)
    new_root = tmp_path / "v30"
    _convert_v21_to_v30(image_ds, new_root)
    assert _inventory(image_ds) == before  # source untouched

    ds = LeRobotDataset(repo_id="x/y", root=new_root)
    assert ds.meta.info.codebase_version == "v3.0"
    assert ds.num_episodes == 12
    assert ds.num_frames == json.loads((image_ds / "meta/info.json").read_text())["total_frames"]
    sample = ds[5]
    for cam in CAMERA_KEYS:
        assert tuple(sample[cam].shape) == (3, 48, 64)
        assert 0.0 <= float(sample[cam].min()) and float(sample[cam].max()) <= 1.0
    assert tuple(sample["observation.state"].shape) == (16,)
    assert tuple(sample["action"].shape) == (16,)
    assert sample["task"] == INSTR[1]
    col = _episode_table(image_ds, 0).to_pydict()
    np.testing.assert_array_equal(
        sample["observation.state"].numpy(), np.array(col["observation.state"][5], np.float32)
    )
    head = (sample[CAMERA_KEYS[0]].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(head, np.asarray(Image.open(io.BytesIO(col[CAMERA_KEYS[0]][5]["bytes"]))))
    assert ds.meta.stats[CAMERA_KEYS[0]]["mean"].shape == (3, 1, 1)


def test_lerobot_conversion_video_mode(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    src = write_synthetic_task(
        tmp_path / "vid", SyntheticTaskSpec(4, "walk", 20), num_episodes=3, min_len=10, max_len=14, video=True
    )
    new_root = tmp_path / "v30"
    _convert_v21_to_v30(src, new_root)
    ds = LeRobotDataset(repo_id="x/y", root=new_root)
    lengths = [e["length"] for e in _read_jsonl(src / "meta/episodes.jsonl")]
    last = ds[sum(lengths) - 1]  # last frame of the last episode: exercises the concatenated-video offsets
    for cam in CAMERA_KEYS:
        assert tuple(last[cam].shape) == (3, 48, 64)
    assert tuple(last["action"].shape) == (20,)
    goal = load_generation_info(src)["episodes"][2]["goal"]
    head = last[CAMERA_KEYS[0]].permute(1, 2, 0).numpy() * 255
    assert np.abs(head - render_head_image(goal, (48, 64))).mean() < 12
