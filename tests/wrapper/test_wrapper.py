"""The inference wrapper: raw observations in, raw actions of the task's own size out, same as plain lerobot."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from kuavo_train.errors import KuavoError
from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper
from tests.conftest import REPO_ROOT, TASK_FILES

# One quick stage 1 (the schema still spans all four tasks: task 4 has 20 action dims).
# n_action_steps < chunk_size so the queue and the chunk cut are really exercised.
FAST = [
    "training.epochs_override=1",
    "training.max_steps_per_epoch=4",
    "training.max_validation_samples=8",
    "policy.n_action_steps=5",
]
WRAPPER_LOGGER = "kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper"


@pytest.fixture(scope="module")
def checkpoint(demo_env, tmp_path_factory):
    from kuavo_train.curriculum.stage import run_stage

    output = tmp_path_factory.mktemp("wrapper") / "run"
    assert run_stage(demo_env.config(TASK_FILES[0], FAST, output=output)).status == "complete"
    return output / "task1_moving_grasp" / "best"


@pytest.fixture(scope="module")
def wrapper(checkpoint):
    return SmolVLAPolicyWrapper.from_pretrained(checkpoint, device="cpu")


@pytest.fixture(autouse=True)
def _fresh_queue(request):
    if "wrapper" in request.fixturenames:
        wrapper = request.getfixturevalue("wrapper")
        wrapper.reset()
        wrapper.clip_actions = True


@pytest.fixture(scope="module")
def lerobot_policy(checkpoint):
    """The same checkpoint loaded by plain lerobot only."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    config = PreTrainedConfig.from_pretrained(checkpoint)
    config.device = "cpu"
    policy = SmolVLAPolicy.from_pretrained(checkpoint, config=config)
    pre, post = make_pre_post_processors(
        policy.config, pretrained_path=str(checkpoint), preprocessor_overrides={"device_processor": {"device": "cpu"}}
    )
    return policy, pre, post


def noise_for(wrapper, batch_size=1, seed=0, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(wrapper.noise_shape(batch_size), generator=generator) * scale


def as_float_chw(obs: dict) -> dict:
    """The same observation with float (C, H, W) images in [0, 1] instead of uint8 (H, W, C)."""
    out = dict(obs)
    for key, value in obs.items():
        if key.startswith("observation.images."):
            out[key] = torch.from_numpy(np.moveaxis(value, -1, -3).astype(np.float32) / 255.0)
    out["observation.state"] = torch.from_numpy(obs["observation.state"])
    return out


def lerobot_batch(wrapper, obs: dict) -> dict:
    """What plain lerobot needs: batched float CHW images, state padded to the schema's size by hand."""
    batch = {}
    for key in wrapper.schema.cameras:
        image = torch.from_numpy(obs[key]).float() / 255.0
        batch[key] = image.permute(2, 0, 1).unsqueeze(0)
    state = torch.from_numpy(obs["observation.state"]).float().unsqueeze(0)
    batch["observation.state"] = torch.nn.functional.pad(state, (0, wrapper.schema.state_dim - state.shape[-1]))
    batch["task"] = [obs["task"]]
    return batch


# ---------------------------------------------------------------- loading


def test_loads_schema_and_instructions(wrapper, checkpoint):
    schema = json.loads((checkpoint / "kuavo_schema.json").read_text())
    assert wrapper.trained_instructions == [t["instruction"] for t in schema["tasks"]]
    assert [wrapper.task_action_dim(t["instruction"]) for t in schema["tasks"]] == [16, 16, 16, 20]
    assert wrapper.schema.action_dim == 20 and wrapper.n_action_steps == 5 and wrapper.chunk_size == 10
    assert wrapper.device == torch.device("cpu")
    assert not wrapper.policy.training


def test_missing_dir_is_a_clear_error(tmp_path):
    with pytest.raises(KuavoError, match="does not exist"):
        SmolVLAPolicyWrapper.from_pretrained(tmp_path / "nope")


def test_stage_dir_instead_of_best_names_best(checkpoint):
    with pytest.raises(KuavoError, match=r"not a kuavo_train checkpoint.*did you mean .*best"):
        SmolVLAPolicyWrapper.from_pretrained(checkpoint.parent)


def test_plain_lerobot_dir_is_not_a_kuavo_checkpoint(checkpoint, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(checkpoint, plain)
    (plain / "kuavo_schema.json").unlink()
    with pytest.raises(KuavoError, match="kuavo_schema.json missing"):
        SmolVLAPolicyWrapper.from_pretrained(plain)


def test_incomplete_checkpoint_lists_missing_files(checkpoint, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    (broken / "policy_postprocessor.json").unlink()
    with pytest.raises(KuavoError, match="incomplete: policy_postprocessor.json missing"):
        SmolVLAPolicyWrapper.from_pretrained(broken)


def test_wrapper_module_loads_without_training_code():
    code = (
        "import sys\n"
        "import kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper\n"
        "bad = [m for m in sys.modules if m.startswith(('kuavo_train.training', 'kuavo_train.curriculum', "
        "'kuavo_train.data.ingest'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=120)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("task_id, action_dim", [(1, 16), (2, 16), (3, 16), (4, 20)])
def test_each_task_returns_its_own_action_size(wrapper, task_id, action_dim):
    obs = wrapper.make_example_observation(task_id, seed=task_id)
    assert obs["observation.state"].shape == (16,)
    action = wrapper.select_action(obs)
    assert action.shape == (action_dim,) and action.dtype == torch.float32 and action.device.type == "cpu"
    assert torch.isfinite(action).all()
    chunk = wrapper.predict_action_chunk(as_float_chw(obs))
    assert chunk.shape == (1, 5, action_dim)


@pytest.mark.parametrize("task_id, action_dim", [(1, 16), (4, 20)])
def test_batched_observations(wrapper, task_id, action_dim):
    obs = wrapper.make_example_observation(task_id, batch=True, batch_size=3, seed=0)
    assert wrapper.select_action(obs).shape == (3, action_dim)
    assert wrapper.predict_action_chunk(as_float_chw(obs)).shape == (3, 5, action_dim)


def test_uint8_hwc_uint8_chw_and_float_chw_give_the_same_actions(wrapper):
    wrapper.clip_actions = False
    obs = wrapper.make_example_observation(4, seed=1)
    uint8_chw = {k: np.moveaxis(v, -1, -3) if k.startswith("observation.images.") else v for k, v in obs.items()}
    noise = noise_for(wrapper)
    a = wrapper.predict_action_chunk(obs, noise=noise)
    b = wrapper.predict_action_chunk(as_float_chw(obs), noise=noise)
    c = wrapper.predict_action_chunk(uint8_chw, noise=noise)  # what TaskDataset items hold
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_other_image_sizes_are_resized_with_a_warning(wrapper, caplog):
    obs = wrapper.make_example_observation(1, seed=2)
    key = next(iter(wrapper.schema.cameras))
    obs[key] = np.zeros((60, 80, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger=WRAPPER_LOGGER):
        assert wrapper.select_action(obs).shape == (16,)
    assert "resizing" in caplog.text


def test_bad_observations_are_clear_errors(wrapper):
    obs = wrapper.make_example_observation(1, seed=3)
    with pytest.raises(KuavoError, match="expects 16"):
        wrapper.select_action({**obs, "observation.state": np.zeros(7, dtype=np.float32)})
    with pytest.raises(KuavoError, match="NaN"):
        wrapper.select_action({**obs, "observation.state": np.full(16, np.nan, dtype=np.float32)})
    key = next(iter(wrapper.schema.cameras))
    with pytest.raises(KuavoError, match="float images must be in"):
        wrapper.select_action({**obs, key: obs[key].astype(np.float32)})
    with pytest.raises(KuavoError, match="is missing from the observation"):
        wrapper.select_action({k: v for k, v in obs.items() if k != key})
    with pytest.raises(KuavoError, match="no 'task'"):
        wrapper.select_action({k: v for k, v in obs.items() if k != "task"})


# ---------------------------------------------------------------- instructions


def test_unknown_instruction_lists_the_trained_ones(wrapper):
    obs = wrapper.make_example_observation(1, seed=4)
    with pytest.raises(KuavoError) as info:
        wrapper.select_action({**obs, "task": "Dance on the table"})
    for instruction in wrapper.trained_instructions:
        assert repr(instruction) in str(info.value)


@pytest.mark.parametrize("bad", ["", "   ", "..."])
def test_empty_instruction_is_an_error(wrapper, bad):
    with pytest.raises(KuavoError, match="empty"):
        wrapper.resolve_instruction(bad)


def test_ambiguous_prefix_is_an_error(wrapper):
    with pytest.raises(KuavoError, match="matches several"):
        wrapper.resolve_instruction("Pick up")  # tasks 1, 2 and 3 all start so


def test_case_and_whitespace_are_ignored_silently(wrapper, caplog):
    instruction = wrapper.trained_instructions[3]
    with caplog.at_level(logging.WARNING, logger=WRAPPER_LOGGER):
        assert wrapper.task_action_dim("  " + "  ".join(instruction.upper().split()) + "\n") == 20
    assert "not exact" not in caplog.text


def test_unique_prefix_warns(wrapper, caplog):
    with caplog.at_level(logging.WARNING, logger=WRAPPER_LOGGER):
        assert wrapper.resolve_instruction("Pick up the package from the conveyor belt").task_id == 2
    assert "not exact" in caplog.text and "weighing" in caplog.text


def test_ellipsis_suffix_works(wrapper):
    obs = wrapper.make_example_observation(2, seed=5)
    short = {**obs, "task": "Pick up the package from the conveyor belt, weigh it ..."}
    wrapper.clip_actions = False
    noise = noise_for(wrapper)
    torch.testing.assert_close(
        wrapper.predict_action_chunk(short, noise=noise), wrapper.predict_action_chunk(obs, noise=noise)
    )
    assert wrapper.resolve_instruction("Move from the starting point\u2026").task_id == 4


# ---------------------------------------------------------------- queue and clipping


def test_queue_returns_the_chunk_step_by_step(wrapper):
    wrapper.clip_actions = False
    obs = wrapper.make_example_observation(4, seed=6)
    noise = noise_for(wrapper, seed=1)
    chunk = wrapper.predict_action_chunk(obs, noise=noise)[0]
    steps = [wrapper.select_action(obs, noise=noise) for _ in range(wrapper.n_action_steps)]
    torch.testing.assert_close(torch.stack(steps), chunk)
    # The queue is empty now: the next call runs the model again (new noise, new action).
    assert not torch.allclose(wrapper.select_action(obs, noise=noise_for(wrapper, seed=2)), chunk[0])


def test_new_instruction_resets_the_queue(wrapper):
    wrapper.clip_actions = False
    first = wrapper.make_example_observation(1, seed=7)
    wrapper.select_action(first)  # fills the queue with task 1's chunk
    other = wrapper.make_example_observation(4, seed=8)
    noise = noise_for(wrapper, seed=3)
    expected = wrapper.predict_action_chunk(other, noise=noise)[0, 0]
    torch.testing.assert_close(wrapper.select_action(other, noise=noise), expected)


def test_reset_clears_the_queue(wrapper):
    wrapper.clip_actions = False
    obs = wrapper.make_example_observation(3, seed=9)
    wrapper.select_action(obs, noise=noise_for(wrapper, seed=4))
    wrapper.reset()
    noise = noise_for(wrapper, seed=5)
    torch.testing.assert_close(
        wrapper.select_action(obs, noise=noise), wrapper.predict_action_chunk(obs, noise=noise)[0, 0]
    )


def test_actions_are_clipped_to_the_training_range(wrapper, checkpoint):
    from safetensors.torch import load_file

    stats = next(load_file(p) for p in checkpoint.glob("policy_postprocessor_step_*.safetensors"))
    low, high = stats["action.min"], stats["action.max"]
    span = high - low
    obs = wrapper.make_example_observation(4, seed=10)
    wild = noise_for(wrapper, seed=6, scale=50.0)  # drives the flow far outside the data

    wrapper.clip_actions = False
    raw = wrapper.predict_action_chunk(obs, noise=wild)
    assert ((raw < low - 0.05 * span) | (raw > high + 0.05 * span)).any()
    wrapper.clip_actions = True
    clipped = wrapper.predict_action_chunk(obs, noise=wild)
    assert (clipped >= low - 0.05 * span - 1e-6).all() and (clipped <= high + 0.05 * span + 1e-6).all()
    torch.testing.assert_close(clipped, torch.clamp(raw, low - 0.05 * span, high + 0.05 * span))
    bounds = wrapper.action_bounds(wrapper.trained_instructions[0])
    assert bounds[0].shape == (16,)


# ---------------------------------------------------------------- same as plain lerobot


@pytest.mark.parametrize("task_id", [1, 4])
def test_same_actions_as_plain_lerobot(wrapper, lerobot_policy, task_id):
    policy, pre, post = lerobot_policy
    policy.reset()
    wrapper.clip_actions = False
    obs = wrapper.make_example_observation(task_id, seed=20 + task_id)
    dim = wrapper.task_action_dim(obs["task"])
    noise = noise_for(wrapper, seed=task_id)

    expected_chunk = post(policy.predict_action_chunk(pre(lerobot_batch(wrapper, obs)), noise=noise))[:, :5, :dim]
    torch.testing.assert_close(wrapper.predict_action_chunk(obs, noise=noise), expected_chunk)
    for _ in range(3):
        expected = post(policy.select_action(pre(lerobot_batch(wrapper, obs)), noise=noise))[0, :dim]
        torch.testing.assert_close(wrapper.select_action(obs, noise=noise), expected)


# ---------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_runs_on_cuda_like_on_cpu(wrapper, checkpoint):
    gpu = SmolVLAPolicyWrapper.from_pretrained(checkpoint, device="cuda", clip_actions=False)
    assert next(gpu.policy.parameters()).device.type == "cuda"
    wrapper.clip_actions = False
    for task_id, dim in ((1, 16), (4, 20)):
        obs = gpu.make_example_observation(task_id, seed=30)
        noise = noise_for(gpu, seed=7)
        action = gpu.select_action(obs, noise=noise)
        assert action.shape == (dim,) and action.device.type == "cpu"
        torch.testing.assert_close(action, wrapper.predict_action_chunk(obs, noise=noise)[0, 0], rtol=1e-3, atol=1e-3)
        assert gpu.predict_action_chunk(obs, noise=noise).shape == (1, 5, dim)


def test_cuda_request_without_cuda_is_a_clear_error(checkpoint):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(KuavoError, match="CUDA is unavailable"):
        SmolVLAPolicyWrapper.from_pretrained(checkpoint, device="cuda")
