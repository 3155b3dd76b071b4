"""training.compile: the compiled model's training steps equal eager's; a bad backend is a config error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kuavo_train.curriculum.build import build_stage_training, seed_everything, stage_seed
from kuavo_train.data.prepare import prepare_curriculum_data
from kuavo_train.errors import KuavoError
from kuavo_train.training.loop import LoopState, train_step
from tests.conftest import TASK_FILES


def _losses(cfg, data, steps: int = 2) -> list[float]:
    seed_everything(stage_seed(cfg))
    training = build_stage_training(cfg, data, None, torch.device("cpu"), echo=lambda _line: None)
    training.sampler.set_epoch(1)
    batches, state = iter(training.train_loader), LoopState()
    compiled = hasattr(training.policy.model.forward, "_torchdynamo_orig_callable")
    assert compiled == cfg.training.compile
    return [train_step(training.ctx, next(batches), state) for _ in range(steps)]


def test_compiled_training_steps_equal_eager(demo_env, tmp_path):
    # aot_eager: dynamo's capture of the model call and AOT autograd without code generation (inductor's C++
    # compilation of the tiny model takes ~90 s on 2 cores; docs/performance.md has its comparison).
    extra = ["training.batch_size=4", "training.compile_backend=aot_eager"]
    eager_cfg = demo_env.config(TASK_FILES[0], extra=extra, output=tmp_path / "run")
    data = prepare_curriculum_data(eager_cfg, tmp_path / "run")
    compiled_cfg = demo_env.config(TASK_FILES[0], extra=[*extra, "training.compile=true"], output=tmp_path / "run")
    eager, compiled = _losses(eager_cfg, data), _losses(compiled_cfg, data)
    assert compiled == pytest.approx(eager, rel=1e-5)


def test_unknown_compile_backend_is_a_config_error(demo_env):
    with pytest.raises(KuavoError, match="training.compile_backend must be one of"):
        demo_env.config(TASK_FILES[0], extra=["training.compile=true", "training.compile_backend=warp_drive"])


def test_compile_leaves_the_saved_weights_unchanged(demo_env, tmp_path):
    from kuavo_train.curriculum.build import compile_model_forward
    from kuavo_train.policy.factory import load_policy

    cfg = demo_env.config(TASK_FILES[0], output=tmp_path / "run")
    data = prepare_curriculum_data(cfg, Path(tmp_path / "run"))
    policy = load_policy(cfg.policy, data.schema, None, torch.device("cpu"))
    before = list(policy.state_dict())
    compile_model_forward(policy, "aot_eager")
    assert list(policy.state_dict()) == before
