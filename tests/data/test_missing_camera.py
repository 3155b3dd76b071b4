"""A task recorded without a camera the others have trains with it masked, as SmolVLA masks an absent camera."""

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from kuavo_train.curriculum.plan import format_plan, plan_stage
from kuavo_train.data.prepare import prepare_curriculum_data, task_dataset
from kuavo_train.data.schema import camera_padding_mask_key
from kuavo_train.errors import KuavoError
from tests.conftest import TASK_FILES

WRIST_R = "observation.images.wrist_cam_r"
FAST = ["training.epochs_override=1", "training.max_steps_per_epoch=2", "training.max_validation_samples=4"]


def drop_camera(source: Path, out: Path, camera: str) -> Path:
    """A copy of a v2.1 image-mode dataset as if it had been exported without ``camera``."""
    shutil.copytree(source, out)
    info_path = out / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"].pop(camera)
    info_path.write_text(json.dumps(info, indent=2))
    stats_path = out / "meta" / "episodes_stats.jsonl"
    lines = [json.loads(line) for line in stats_path.read_text().splitlines() if line.strip()]
    for line in lines:
        line["stats"].pop(camera, None)
    stats_path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    for parquet in (out / "data").rglob("*.parquet"):
        table = pq.read_table(parquet)
        pq.write_table(table.drop_columns([camera]), parquet)
    return out


@pytest.fixture(scope="module")
def masked(demo_env, tmp_path_factory):
    """(config with placement lacking wrist_cam_r, its curriculum data)."""
    root = tmp_path_factory.mktemp("missing_camera")
    placement = drop_camera(demo_env.root / "task3_placement", root / "placement_no_wrist_r", WRIST_R)
    cfg = demo_env.config(TASK_FILES[2], [f"data.roots.placement={placement}", *FAST], output=root / "run")
    return cfg, prepare_curriculum_data(cfg, root / "run")


def test_the_schema_and_the_plan_say_which_task_lacks_which_camera(masked):
    cfg, data = masked
    assert list(data.schema.cameras) == ["observation.images.head_cam_h", "observation.images.wrist_cam_l", WRIST_R]
    assert data.schema.task(3).missing_cameras == (WRIST_R,)
    assert all(not data.schema.task(t).missing_cameras for t in (1, 2, 4))
    assert "camera masked:     task placement has no wrist_cam_r" in format_plan(plan_stage(cfg, data))


def test_samples_carry_a_blank_image_and_its_padding_mask(masked):
    _, data = masked
    placement = task_dataset(data, 3, data.splits[3].train, 10)[0]
    grasp = task_dataset(data, 1, data.splits[1].train, 10)[0]
    assert placement[WRIST_R].dtype == torch.uint8 and not placement[WRIST_R].any()
    assert placement[camera_padding_mask_key(WRIST_R)].item() is False
    assert grasp[camera_padding_mask_key(WRIST_R)].item() is True
    assert placement[WRIST_R].shape == grasp[WRIST_R].shape  # they share replay batches


def test_the_masked_camera_does_not_reach_the_loss(masked):
    from torch.utils.data import default_collate

    from kuavo_train.policy.factory import load_policy, make_processors
    from kuavo_train.policy.loss import fixed_noise_and_time, per_sample_loss, prepare_batch

    cfg, data = masked
    policy = load_policy(cfg.policy, data.schema, None, torch.device("cpu")).eval()
    preprocessor, _ = make_processors(policy, data.stats)
    samples = [
        task_dataset(data, 1, data.splits[1].train, cfg.policy.chunk_size)[0],
        task_dataset(data, 3, data.splits[3].train, cfg.policy.chunk_size)[0],
    ]

    def losses(raw):
        batch, side = prepare_batch(default_collate(raw), preprocessor, torch.device("cpu"))
        noise, time = fixed_noise_and_time(
            torch.tensor([1, 2]), cfg.policy.chunk_size, policy.config.max_action_dim, torch.device("cpu")
        )
        with torch.no_grad():
            return per_sample_loss(policy, batch, side["action_dim_mask"], noise=noise, time=time)

    reference = losses(samples)
    noisy = [dict(s) for s in samples]
    for sample in noisy:
        sample[WRIST_R] = torch.randint(0, 256, sample[WRIST_R].shape, dtype=torch.uint8)
    changed = losses(noisy)
    assert torch.equal(changed[1], reference[1])  # placement: the camera is masked out
    assert not torch.equal(changed[0], reference[0])  # moving_grasp sees it


def test_the_wrapper_acts_without_the_camera_only_for_the_task_that_lacks_it(masked):
    from kuavo_train.curriculum.stage import run_stage
    from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper

    cfg, _ = masked
    stage1 = dataclasses.replace(cfg, task=cfg.tasks[0], task_file=TASK_FILES[0])
    assert run_stage(stage1).status == "complete"
    policy = SmolVLAPolicyWrapper.from_pretrained(
        Path(cfg.training.output_directory) / "task1_moving_grasp" / "best", device="cpu"
    )
    observation = policy.make_example_observation(task_id=3, seed=0)
    observation.pop(WRIST_R)
    assert policy.select_action(observation).shape == (16,)
    observation = policy.make_example_observation(task_id=1, seed=0)
    observation.pop(WRIST_R)
    with pytest.raises(KuavoError, match="wrist_cam_r' is missing"):
        policy.select_action(observation)


def test_a_camera_no_task_has_is_an_error(demo_env, tmp_path):
    cameras = "[observation.images.head_cam_h,observation.images.wrist_cam_l,observation.images.chest_cam]"
    cfg = demo_env.config(TASK_FILES[2], [f"task.data.cameras={cameras}"], output=tmp_path / "run")
    with pytest.raises(
        KuavoError, match=r"camera\(s\) \['observation.images.chest_cam'\] not in the dataset .* nor in any other"
    ):
        prepare_curriculum_data(cfg, tmp_path / "run")


def test_check_data_reports_the_camera_as_masked_not_as_a_problem(demo_env, masked, capsys):
    from kuavo_train.data.check import check_data_main

    cfg, _ = masked
    roots = [f"data.roots.{t.name}={t.data.root}" for t in cfg.tasks]
    assert check_data_main(["--config-name", "smolvla_sequential_demo", *roots]) == 0
    assert "trained with observation.images.wrist_cam_r masked" in capsys.readouterr().out
