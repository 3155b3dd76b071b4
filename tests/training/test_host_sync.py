"""A training step reads device values once: the (loss, gradient norm) pair that decides the step.

On a GPU every ``.item()``, ``.tolist()``, ``float(t)``, ``bool(t)``, ``.cpu()`` or ``.numpy()`` of a device
tensor makes the host wait for the device. This test records every such call made during ``train_step`` (on
the CPU, where the same calls run) with the code line that made it, outside torch itself.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import torch

from kuavo_train.curriculum.build import build_stage_training, seed_everything, stage_seed
from kuavo_train.data.prepare import prepare_curriculum_data
from kuavo_train.training.loop import LoopState, train_step
from tests.conftest import TASK_FILES

READS = ("item", "tolist", "__float__", "__bool__", "__int__", "cpu", "numpy")
TORCH_DIR = str(Path(torch.__file__).parent)


def _caller() -> str:
    frame = sys._getframe(2)
    while frame.f_code.co_filename.startswith(TORCH_DIR) or frame.f_code.co_filename == __file__:
        frame = frame.f_back
    path = Path(frame.f_code.co_filename)
    return f"{'/'.join(path.parts[-2:])}:{frame.f_code.co_name}"


def test_one_device_read_per_step(demo_env, tmp_path, monkeypatch):
    cfg = demo_env.config(TASK_FILES[1], extra=["training.batch_size=4"], output=tmp_path / "run")
    data = prepare_curriculum_data(cfg, tmp_path / "run")
    seed_everything(stage_seed(cfg))
    training = build_stage_training(cfg, data, None, torch.device("cpu"), echo=lambda _line: None)
    training.sampler.set_epoch(1)
    batches, state = iter(training.train_loader), LoopState()
    train_step(training.ctx, next(batches), state)  # warm: lazy set-up is not the steady state
    raw = [next(batches), next(batches)]

    calls = Counter()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def recording(self, *args, _original=original, _name=name, **kwargs):
            calls[(_name, _caller())] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, recording)
    for batch in raw:
        assert train_step(training.ctx, batch, state) is not None
    monkeypatch.undo()
    assert calls == {
        # the one read of each step: (loss, gradient norm) as two Python floats
        ("tolist", "training/loop.py:train_step"): 2,
        # each sample's noise seed: a host tensor from the loader (never copied to the device), not a device read
        ("tolist", "policy/loss.py:fixed_noise_and_time"): 2,
    }, sorted(calls.items())
