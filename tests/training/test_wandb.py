"""training.wandb: the TensorBoard scalars and the resolved config also go to a W&B run (offline here)."""

import json

import pytest

from kuavo_train.config.load import load_config
from kuavo_train.errors import KuavoError
from tests.conftest import TASK_FILES


@pytest.fixture(autouse=True)
def quiet_local_wandb(tmp_path, monkeypatch):
    """W&B's own files (settings, cache, artifacts) in the test's tmp dir, nothing printed, no network."""
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")


def read_offline_run(stage_dir):
    """(run record, history rows, config) of the single offline run under ``stage_dir/wandb/``."""
    import wandb
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    wandb.teardown()  # run.finish() returns before W&B's service process has written the run file
    files = sorted(stage_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    store = datastore.DataStore()
    store.open_for_scan(str(files[0]))
    run, history = None, []
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind == "history":
            history.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    return run, history, config


def test_stage_logger_sends_scalars_to_an_offline_run(tmp_path):
    from kuavo_train.config.schema import WandbConfig
    from kuavo_train.training.loggers import StageLogger, WandbRunSpec

    stage_dir = tmp_path / "run" / "task1_moving_grasp"
    spec = WandbRunSpec(
        WandbConfig(enable=True, mode="offline", run_name="try"),
        "task1_moving_grasp",
        "run",
        {"training": {"batch_size": 4}, "criteria": {"previous_task_max_loss": {2: 0.7}}},
    )
    log = StageLogger(stage_dir, stage_dir / "tensorboard", wandb=spec)
    for step in (1, 2):
        log.scalar("train/loss", 1.0 / step, step)
        log.scalar("train/lr", 1e-4, step)
    log.scalar("validation/task1_loss", 0.25, 2)
    log.close()

    run, history, config = read_offline_run(stage_dir)
    assert (run.display_name, run.run_group, run.project) == ("try-task1_moving_grasp", "run", "kuavo_train")
    assert [(row["_step"], row["train/loss"], row["train/lr"]) for row in history] == [(1, 1.0, 1e-4), (2, 0.5, 1e-4)]
    assert history[-1]["validation/task1_loss"] == 0.25
    assert config["training"] == {"batch_size": 4} and config["criteria"] == {"previous_task_max_loss": {"2": 0.7}}
    assert "wandb sync" in (stage_dir / "smolvla_sequential_training.log").read_text()
    assert list((stage_dir / "tensorboard").glob("events.out.tfevents.*"))  # TensorBoard as before


def test_a_stage_with_wandb_logs_its_tensorboard_scalars_and_config(demo_env, tmp_path):
    from kuavo_train.curriculum.stage import run_stage

    output = tmp_path / "curriculum"
    extra = [
        "training.epochs_override=1",
        "training.max_steps_per_epoch=2",
        "training.max_validation_samples=4",
        "training.wandb.enable=true",
        "training.wandb.mode=offline",
        "training.gradient_accumulation_steps=2",
    ]
    assert run_stage(demo_env.config(TASK_FILES[0], extra, output=output)).status == "complete"

    stage_dir = output / "task1_moving_grasp"
    run, history, config = read_offline_run(stage_dir)
    assert (run.display_name, run.run_group) == ("task1_moving_grasp", "curriculum")
    assert [row["_step"] for row in history if "train/loss" in row] == [1, 2]
    assert all("train/lr" in row for row in history if "train/loss" in row)
    assert "validation/task1_loss" in history[-1]
    assert config["training"]["gradient_accumulation_steps"] == 2 and config["training"]["wandb"]["enable"] is True
    results = json.loads((stage_dir / "training_results.json").read_text())
    assert results["optimizer_steps"] == 2 and results["effective_batch_size"] == 2 * results["batch_size"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.wandb.mode=cloud", "training.wandb.mode must be one of offline, online, disabled, got 'cloud'"),
        ("training.wandb.project=' '", "training.wandb.project must not be empty"),
        ("training.wandb.entity_name=x", "override 'training.wandb.entity_name' names no key of this config"),
    ],
)
def test_bad_wandb_settings_give_one_line_errors(override, message):
    with pytest.raises(KuavoError) as info:
        load_config(overrides=[override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_enabling_wandb_without_the_package_says_how_to_install_it(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    assert load_config(overrides=["training.wandb.enable=false"]).training.wandb.enable is False  # off: not needed
    with pytest.raises(
        KuavoError, match=r"training.wandb.enable=true needs the wandb package: `pip install -e .*wandb"
    ):
        load_config(overrides=["training.wandb.enable=true"])
