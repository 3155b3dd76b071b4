import json

import pytest
import torch

from kuavo_train.errors import KuavoError
from kuavo_train.files import write_dir_atomically, write_json_atomically
from kuavo_train.training.checkpoint import prune_epoch_dirs
from kuavo_train.training.loop import LoopState, StepContext, train_step


def test_crash_mid_write_leaves_the_previous_checkpoint_intact(tmp_path):
    target = tmp_path / "best"
    write_dir_atomically(target, lambda d: (d / "model.safetensors").write_text("good"))

    def crash(d):
        (d / "model.safetensors").write_text("half written")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_dir_atomically(target, crash)
    assert (target / "model.safetensors").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]  # no temp dir left behind


def test_json_write_is_atomic(tmp_path):
    path = tmp_path / "training_results.json"
    write_json_atomically(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomically(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}


def test_prune_keeps_the_newest_epochs_only(tmp_path):
    for name in ("epoch2", "epoch10", "epoch4", "best", "last"):
        (tmp_path / name).mkdir()
    prune_epoch_dirs(tmp_path, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "epoch10", "epoch4", "last"]


class _NanPolicy(torch.nn.Module):
    """Stands in for SmolVLA in the step: its loss is whatever the batch says."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))


def _ctx(monkeypatch, losses):
    import kuavo_train.training.loop as loop

    values = iter(losses)
    monkeypatch.setattr(loop, "per_sample_loss", lambda policy, batch, mask, **noise: policy.weight * next(values))
    monkeypatch.setattr(loop, "training_noise", lambda ctx, seeds, epoch: (None, None))
    policy = _NanPolicy()
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return StepContext(
        policy=policy,
        preprocessor=lambda b: b,
        optimizer=optimizer,
        scheduler=scheduler,
        device=torch.device("cpu"),
        grad_clip_norm=1.0,
        autocast=__import__("contextlib").nullcontext,
        max_consecutive_nonfinite=3,
        trainable=list(policy.parameters()),
    )


BATCH = {"action_dim_mask": torch.ones(1, 16, dtype=torch.bool), "sample_seed": torch.tensor([3]), "task": ["x"]}


def test_non_finite_loss_skips_the_step(monkeypatch):
    ctx, state = _ctx(monkeypatch, [torch.tensor([float("nan")]), torch.tensor([1.0])]), LoopState()
    assert train_step(ctx, dict(BATCH), state) is None
    assert ctx.policy.weight.item() == 1.0 and state.skipped_steps == 1 and state.step == 0
    assert train_step(ctx, dict(BATCH), state) == pytest.approx(1.0)
    assert state.step == 1 and state.consecutive_nonfinite == 0


def test_too_many_non_finite_steps_stop_the_stage(monkeypatch):
    ctx, state = _ctx(monkeypatch, [torch.tensor([float("inf")])] * 3), LoopState()
    train_step(ctx, dict(BATCH), state)
    train_step(ctx, dict(BATCH), state)
    with pytest.raises(KuavoError, match="3 optimizer steps in a row had a non-finite loss"):
        train_step(ctx, dict(BATCH), state)


def test_crash_between_the_two_renames_is_recovered(tmp_path):
    from kuavo_train.files import recover_interrupted_writes
    from kuavo_train.layout import COMPLETE_POLICY_FILES as POLICY_FILES

    old = tmp_path / ".last.old-123"
    old.mkdir()
    for name in POLICY_FILES:
        (old / name).write_text("x")
    (tmp_path / ".best.tmp-abc").mkdir()
    recover_interrupted_writes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
