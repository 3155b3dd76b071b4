"""data.feature_cache: frozen image embeddings computed once, exact, resumable, and the loader reads no image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kuavo_train.config.load import load_config
from kuavo_train.curriculum import features as features_module
from kuavo_train.curriculum.stage import run_stage
from kuavo_train.data.feature_cache import DONE_FILE, FeatureCache, FeatureCacheKey
from kuavo_train.errors import KuavoError
from kuavo_train.layout import MODEL_FILE, StagePaths
from tests.conftest import DEMO_CONFIG, FAST_STAGE, TASK_FILES

FAST = [*FAST_STAGE, "training.max_steps_per_epoch=3", "training.max_validation_samples=4"]


def _private_cache(demo_env, tmp_path: Path) -> Path:
    """A copy of the session's data cache without image features (no v2.1 -> v3.0 conversion again)."""
    from kuavo_train.data.ingest import ingest_dataset

    for task in demo_env.config().tasks:
        ingest_dataset(task.data.root, demo_env.root / "cache")
    target = tmp_path / "cache"
    shutil.copytree(demo_env.root / "cache", target, ignore=shutil.ignore_patterns("features"))
    return target


def _train(demo_env, output: Path, extra=(), task=TASK_FILES[0]):
    cfg = demo_env.config(task, extra=[*FAST, *extra], output=output)
    result = run_stage(cfg)
    return cfg, json.loads(Path(result.results_path).read_text())


def _best(cfg) -> dict:
    root = Path(cfg.training.output_directory)
    return load_file(str(StagePaths(root, root / cfg.task.dirname).best / MODEL_FILE))


def _cache_dirs(cache: Path) -> list[Path]:
    return sorted(p.parent for p in (cache / "features").glob(f"*/*/{DONE_FILE}"))


@pytest.mark.parametrize("freeze_connector", [False, True], ids=["vision", "connector"])
def test_training_with_the_cache_equals_training_without(demo_env, tmp_path, freeze_connector):
    cache = _private_cache(demo_env, tmp_path)
    common = [f"data.cache_dir={cache}", f"policy.freeze_connector={str(freeze_connector).lower()}"]
    cfg_off, off = _train(demo_env, tmp_path / "off", [*common, "data.feature_cache=off"])
    assert not _cache_dirs(cache)
    cfg_on, on = _train(demo_env, tmp_path / "on", [*common, "data.feature_cache=on"])
    level = "connector" if freeze_connector else "vision"
    assert {json.loads((d / "key.json").read_text())["level"] for d in _cache_dirs(cache)} == {level}
    assert on["timings_s"]["feature_cache"] > 0 and off["timings_s"]["feature_cache"] == 0
    np.testing.assert_allclose(on["train_loss_per_epoch"], off["train_loss_per_epoch"], rtol=1e-5)
    final_on, final_off = on["validation_history"][-1]["losses"], off["validation_history"][-1]["losses"]
    assert final_on.keys() == final_off.keys()
    np.testing.assert_allclose(list(final_on.values()), list(final_off.values()), rtol=1e-5)
    weights_on, weights_off = _best(cfg_on), _best(cfg_off)
    changed = 0
    for name, tensor in weights_off.items():
        torch.testing.assert_close(weights_on[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
        changed += 1
    assert changed == len(weights_on)


def test_a_cached_stage_reads_no_image(demo_env, tmp_path, monkeypatch):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    cache = _private_cache(demo_env, tmp_path)
    _train(demo_env, tmp_path / "first", [f"data.cache_dir={cache}"])  # builds the cache (auto: on)

    def no_images(self, index):
        raise AssertionError("an image was read with the feature cache on")

    monkeypatch.setattr(LeRobotDataset, "__getitem__", no_images)
    _, second = _train(demo_env, tmp_path / "second", [f"data.cache_dir={cache}"])
    assert second["validation_history"]


def test_later_stages_reuse_the_frames_cached_before(demo_env, tmp_path, capsys):
    from kuavo_train.data.prepare import prepare_curriculum_data, task_dataset

    cache = _private_cache(demo_env, tmp_path)
    _train(demo_env, tmp_path / "run", [f"data.cache_dir={cache}"], task=TASK_FILES[0])
    capsys.readouterr()
    cfg, _ = _train(demo_env, tmp_path / "run", [f"data.cache_dir={cache}"], task=TASK_FILES[1])
    line = next(x for x in capsys.readouterr().out.splitlines() if "computed now" in x)
    computed = int(line.split("(")[1].split(" computed")[0])
    data = prepare_curriculum_data(cfg, Path(cfg.training.output_directory))
    task2_train = len(task_dataset(data, 2, data.splits[2].train, cfg.policy.chunk_size, use_cache=False))
    # Stage 1 cached task 1's training frames and every task's held-out frames: stage 2 adds task 2's training ones.
    assert computed == task2_train


def test_an_interrupted_build_resumes_and_gives_the_same_cache(demo_env, tmp_path, monkeypatch):
    cache = _private_cache(demo_env, tmp_path)
    monkeypatch.setattr(features_module, "_COMMIT_SECONDS", 0.0)  # commit after every batch
    real_embed, calls = features_module.embed_images, {"n": 0}

    def failing_embed(policy, images, level):
        calls["n"] += 1
        if calls["n"] == 12:  # after the probe and some batches
            raise RuntimeError("simulated crash")
        return real_embed(policy, images, level)

    monkeypatch.setattr(features_module, "embed_images", failing_embed)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(demo_env, tmp_path / "crashed", [f"data.cache_dir={cache}"])

    def cached_frames() -> int:
        return sum(int(np.load(d / DONE_FILE).sum()) for d in _cache_dirs(cache))

    before_crash = cached_frames()
    monkeypatch.setattr(features_module, "embed_images", real_embed)
    _train(demo_env, tmp_path / "resumed", [f"data.cache_dir={cache}"])
    assert 0 < before_crash < cached_frames()  # the crashed build's rows were kept, and the rest added

    fresh = _private_cache(demo_env, tmp_path / "second")
    _train(demo_env, tmp_path / "fresh", [f"data.cache_dir={fresh}"])

    def by_task(root: Path) -> dict[str, Path]:  # the dataset fingerprint holds the cache's path: pair by task
        return {d.parent.name.rsplit("-", 2)[0]: d for d in _cache_dirs(root)}

    resumed_dirs, fresh_dirs = by_task(cache), by_task(fresh)
    assert resumed_dirs.keys() == fresh_dirs.keys() and len(resumed_dirs) == 4
    for task, resumed_dir in resumed_dirs.items():
        fresh_dir = fresh_dirs[task]
        assert (np.load(resumed_dir / DONE_FILE) == np.load(fresh_dir / DONE_FILE)).all()
        done = np.load(resumed_dir / DONE_FILE)
        for npy in (p for p in resumed_dir.glob("*.npy") if p.name != DONE_FILE):
            a, b = np.load(npy), np.load(fresh_dir / npy.name)
            rows = done if len(a) == len(done) else slice(None)
            np.testing.assert_allclose(a[rows], b[rows], rtol=1e-5, atol=1e-6)


def _key(**changes) -> FeatureCacheKey:
    fields = dict(
        dataset="d-1",
        cameras={"observation.images.a": (3, 8, 8)},
        blank_cameras=(),
        level="vision",
        weights="w",
        resize=(64, 64),
        dtype="float32",
        tokens=4,
        dim=2,
    )
    return FeatureCacheKey(**{**fields, **changes})


@pytest.mark.parametrize(
    "change",
    [{"dataset": "d-2"}, {"weights": "w2"}, {"level": "connector"}, {"resize": (32, 32)}, {"dtype": "bfloat16"}],
)
def test_anything_that_changes_an_embedding_changes_the_cache(change):
    assert _key().digest() != _key(**change).digest()


def test_rows_count_only_after_commit_and_read_back_exactly(tmp_path):
    cache = FeatureCache.open_or_create(tmp_path, _key(), frames=5)
    values = torch.arange(2 * 4 * 2, dtype=torch.float32).reshape(2, 4, 2)
    cache.write(np.array([1, 3]), {"observation.images.a": values})
    assert list(FeatureCache.open_or_create(tmp_path, _key(), 5).missing(np.arange(5))) == [0, 1, 2, 3, 4]
    cache.commit()
    reopened = FeatureCache.open_or_create(tmp_path, _key(), 5)
    assert list(reopened.missing(np.arange(5))) == [0, 2, 4]
    assert torch.equal(reopened.read(3)["observation.images.a"], values[1])
    with pytest.raises(KuavoError, match="no embedding of frame 2"):
        reopened.read(2)


def test_bfloat16_embeddings_round_trip(tmp_path):
    key = _key(dtype="bfloat16")
    cache = FeatureCache.open_or_create(tmp_path, key, frames=2)
    values = torch.randn(1, 4, 2).to(torch.bfloat16)
    cache.write(np.array([0]), {"observation.images.a": values})
    cache.commit()
    assert torch.equal(FeatureCache.open_or_create(tmp_path, key, 2).read(0)["observation.images.a"], values[0])


def test_a_damaged_cache_is_a_one_line_error(tmp_path):
    cache = FeatureCache.open_or_create(tmp_path, _key(), frames=5)
    (cache.directory / DONE_FILE).write_bytes(b"not numpy")
    with pytest.raises(KuavoError, match="unreadable.*delete that folder"):
        FeatureCache.open_or_create(tmp_path, _key(), frames=5)


def test_no_room_on_disk_refuses_when_on_and_falls_back_when_auto(demo_env, tmp_path, monkeypatch, capsys):
    cache = _private_cache(demo_env, tmp_path)
    monkeypatch.setattr(features_module, "free_bytes", lambda _where: 0)
    with pytest.raises(KuavoError, match="needs .* GB more under .* free space"):
        _train(demo_env, tmp_path / "on", [f"data.cache_dir={cache}", "data.feature_cache=on"])
    _, auto = _train(demo_env, tmp_path / "auto", [f"data.cache_dir={cache}"])
    assert "image feature cache: off (the image feature cache needs" in capsys.readouterr().out
    assert auto["timings_s"]["feature_cache"] == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.feature_cache=sometimes"], "data.feature_cache must be one of auto, on, off"),
        (["data.feature_cache=on", "policy.freeze_vision_encoder=false"], "data.feature_cache=on needs a frozen"),
    ],
)
def test_bad_feature_cache_settings_are_config_errors(demo_env, overrides, message):
    from kuavo_train.config.load import DEFAULT_CONFIG_DIR

    with pytest.raises(KuavoError, match=message):
        load_config(DEFAULT_CONFIG_DIR, DEMO_CONFIG, [*demo_env.overrides, f"task={TASK_FILES[0]}", *overrides])


def test_the_plan_predicts_the_cache_a_stage_builds(demo_env, tmp_path):
    from kuavo_train.curriculum.plan import plan_feature_cache
    from kuavo_train.data.prepare import prepare_curriculum_data

    cache = _private_cache(demo_env, tmp_path)
    cfg, _ = _train(demo_env, tmp_path / "run", [f"data.cache_dir={cache}"])
    data = prepare_curriculum_data(cfg, Path(cfg.training.output_directory))
    planned = plan_feature_cache(cfg, data, "cpu")
    keys = [json.loads((d / "key.json").read_text()) for d in _cache_dirs(cache)]
    cached = sum(int(np.load(d / DONE_FILE).sum()) for d in _cache_dirs(cache))
    key = keys[0]
    assert planned.line.startswith(f"vision embeddings of {cached} frames")
    assert f"{key['tokens']}x{key['dim']} each" in planned.line
    assert "; 0 images not cached yet: 0.00 GB more" in planned.line  # the plan sees what the stage cached
    assert planned.sample_bytes == len(key["cameras"]) * key["tokens"] * key["dim"] * 4


def test_the_plan_refuses_a_cache_without_room_when_on(demo_env, tmp_path, monkeypatch):
    from kuavo_train.curriculum import plan as plan_module
    from kuavo_train.data.prepare import prepare_curriculum_data

    monkeypatch.setattr(features_module, "free_bytes", lambda _path: 0)
    cache = _private_cache(demo_env, tmp_path)  # nothing cached yet
    cfg = demo_env.config(
        TASK_FILES[0], extra=[f"data.cache_dir={cache}", "data.feature_cache=on"], output=tmp_path / "run"
    )
    data = prepare_curriculum_data(cfg, tmp_path / "run")
    with pytest.raises(KuavoError, match="needs up to .* GB more under .* free space"):
        plan_module.plan_feature_cache(cfg, data, "cpu")
    auto = demo_env.config(TASK_FILES[0], extra=[f"data.cache_dir={cache}"], output=tmp_path / "run")
    planned = plan_module.plan_feature_cache(auto, data, "cpu")
    assert planned.line.startswith("off (the image feature cache needs") and planned.sample_bytes is None
