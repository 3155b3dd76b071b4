"""training.gradient_accumulation_steps: N micro-batches per optimizer step, the same step as one N-times larger
batch."""

import contextlib

import pytest
import torch
from torch.utils.data import Subset

from kuavo_train.config.load import load_config
from kuavo_train.errors import KuavoError
from kuavo_train.training.loop import LoopState, StepContext, StopRequest, train_epoch, train_step
from tests.conftest import TASK_FILES


@pytest.fixture(scope="module")
def tiny_setup(demo_env, tmp_path_factory):
    """The demo config's tiny SmolVLA in fp32 on CPU, its processors, and 8 training samples of task 1."""
    from kuavo_train.data.prepare import prepare_curriculum_data, task_dataset
    from kuavo_train.policy.factory import load_policy, make_processors

    output = tmp_path_factory.mktemp("accumulation")
    cfg = demo_env.config(TASK_FILES[0], ["training.device=cpu", "training.mixed_precision=no"], output=output)
    data = prepare_curriculum_data(cfg, output)
    torch.manual_seed(0)
    policy = load_policy(cfg.policy, data.schema, None, torch.device("cpu"))
    preprocessor, _ = make_processors(policy, data.stats)
    dataset = task_dataset(data, 1, data.splits[1].train, cfg.policy.chunk_size)
    samples = Subset(dataset, list(range(0, 8 * 3, 3)))  # 8 samples from different frames
    return cfg, policy, preprocessor, samples


def _one_optimizer_step(tiny_setup, initial: dict, batch_size: int, accumulation: int):
    """Parameters and gradients after one optimizer step over the 8 samples, in batches of ``batch_size``."""
    from kuavo_train.evaluation.validate import make_loader
    from kuavo_train.training.optim import make_optimizer, make_scheduler

    cfg, policy, preprocessor, samples = tiny_setup
    policy.load_state_dict(initial)
    device = torch.device("cpu")
    optimizer = make_optimizer(policy, cfg.task.training.lr, cfg.policy.optimizer, device)
    ctx = StepContext(
        policy=policy,
        preprocessor=preprocessor,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, cfg.task.training.lr, 1, cfg.policy.scheduler),
        device=device,
        grad_clip_norm=cfg.policy.optimizer.grad_clip_norm,
        autocast=contextlib.nullcontext,
        max_consecutive_nonfinite=3,
        trainable=[p for p in policy.parameters() if p.requires_grad],
        seed=cfg.training.seed,
        accumulation_steps=accumulation,
    )
    loader = make_loader(samples, batch_size, 0)
    state = LoopState()
    logged = []
    losses = train_epoch(ctx, loader, state, total=1, log_scalar=lambda *item: logged.append(item), desc="test")
    assert state.step == 1 and state.batches_into_epoch == 8 // batch_size and len(losses) == 1
    named = [(n, p) for n, p in policy.named_parameters() if p.requires_grad]
    return (
        {n: p.detach().clone() for n, p in named},
        {n: p.grad.detach().clone() for n, p in named},
        losses[0],
        logged,
    )


def test_two_micro_batches_of_4_make_the_step_of_one_batch_of_8(tiny_setup):
    policy = tiny_setup[1]
    initial = {k: v.clone() for k, v in policy.state_dict().items()}
    params_8, grads_8, loss_8, logged_8 = _one_optimizer_step(tiny_setup, initial, batch_size=8, accumulation=1)
    params_4x2, grads_4x2, loss_4x2, logged_4x2 = _one_optimizer_step(tiny_setup, initial, batch_size=4, accumulation=2)
    policy.load_state_dict(initial)

    assert loss_4x2 == pytest.approx(loss_8, rel=1e-5)
    # Gradients too: AdamW's first step is about lr * sign(grad), blind to a wrong loss scale.
    for name in grads_8:
        torch.testing.assert_close(grads_4x2[name], grads_8[name], rtol=1e-4, atol=1e-7, msg=name)
    moved = [name for name in params_8 if not torch.equal(params_8[name], initial[name])]
    assert moved  # the step changed the weights
    # AdamW's first step moves each weight by about lr * g / (|g| + eps): where |g| is near eps
    # (1e-8), float summation order (grads differ by ~3e-9) shifts it by ~1e-6, a 0.1% of lr (1e-3).
    lr = tiny_setup[0].task.training.lr
    for name in params_8:
        torch.testing.assert_close(params_4x2[name], params_8[name], rtol=0, atol=0.01 * lr, msg=name)
    # One train/loss and one train/lr per optimizer step, at step 1.
    assert [(tag, step) for tag, _, step in logged_4x2] == [("train/loss", 1), ("train/lr", 1)]
    assert [tag for tag, _, _ in logged_8] == [tag for tag, _, _ in logged_4x2]


# ---- the epoch bookkeeping, on a stand-in policy (fast) --------------------------------------------
class _Scalar(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))


def _stub_ctx(monkeypatch, losses_per_batch, accumulation):
    import kuavo_train.training.loop as loop

    values = iter(losses_per_batch)
    monkeypatch.setattr(loop, "per_sample_loss", lambda policy, batch, mask, **noise: policy.weight * next(values))
    monkeypatch.setattr(loop, "training_noise", lambda ctx, seeds, epoch: (None, None))
    monkeypatch.setattr(loop, "prepare_batch", lambda raw, preprocessor, device: (raw, raw))
    policy = _Scalar()
    optimizer = torch.optim.SGD(policy.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return StepContext(
        policy=policy,
        preprocessor=None,
        optimizer=optimizer,
        scheduler=scheduler,
        device=torch.device("cpu"),
        grad_clip_norm=0.0,
        autocast=contextlib.nullcontext,
        max_consecutive_nonfinite=3,
        trainable=list(policy.parameters()),
        accumulation_steps=accumulation,
    )


class _SkippingLoader:
    """Like the DataLoader over a resumed ReplayMixSampler: its length is the whole epoch's, its
    iterator starts after the skipped batches."""

    def __init__(self, batches, skipped):
        self.batches, self.skipped = batches, skipped

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches[self.skipped :])


def _batch():
    return {"action_dim_mask": torch.ones(1, 2, dtype=torch.bool), "sample_seed": torch.tensor([0]), "task": ["x"]}


def test_an_epoch_of_5_batches_at_accumulation_2_is_3_optimizer_steps(monkeypatch):
    ctx = _stub_ctx(monkeypatch, [torch.tensor([v]) for v in (1.0, 3.0, 2.0, 4.0, 5.0)], accumulation=2)
    state, logged = LoopState(), []
    losses = train_epoch(
        ctx,
        [_batch() for _ in range(5)],
        state,
        total=3,
        log_scalar=lambda tag, value, step: logged.append((tag, value, step)),
        desc="test",
    )
    # Loss = weight x the batch's value; SGD at lr 1 takes weight -= mean of the step's values:
    # step 1 (1, 3): loss 2, weight -1; step 2 (2, 4): loss -3, weight -4; step 3 (5 alone): loss -20, weight -9.
    assert losses == pytest.approx([2.0, -3.0, -20.0])
    assert ctx.policy.weight.item() == pytest.approx(-9.0)
    assert state.step == 3 and state.batches_into_epoch == 5
    assert [step for tag, _, step in logged if tag == "train/loss"] == [1, 2, 3]


def test_a_stop_comes_between_optimizer_steps_and_the_epoch_resumes_there(monkeypatch):
    ctx = _stub_ctx(monkeypatch, [torch.tensor([1.0])] * 6, accumulation=3)
    stop = StopRequest()
    state = LoopState()

    def log(tag, value, step):
        stop.signal = 15  # SIGTERM right after the first optimizer step

    train_epoch(ctx, [_batch() for _ in range(6)], state, total=2, log_scalar=log, desc="test", stop=stop)
    assert state.step == 1 and state.batches_into_epoch == 3  # a whole optimizer step: resumable exactly
    # Resuming: the sampler skips batches_into_epoch batches, the loop trains the remaining step.
    train_epoch(
        ctx,
        _SkippingLoader([_batch() for _ in range(6)], skipped=3),
        state,
        total=2,
        log_scalar=lambda *a: None,
        desc="test",
    )
    assert state.step == 2 and state.batches_into_epoch == 6


def test_a_non_finite_micro_batch_skips_the_whole_step_once(monkeypatch):
    ctx = _stub_ctx(monkeypatch, [torch.tensor([1.0]), torch.tensor([float("nan")])], accumulation=2)
    state = LoopState()
    assert train_step(ctx, [_batch(), _batch()], state) is None
    assert state.skipped_steps == 1 and state.step == 0 and ctx.policy.weight.item() == 1.0
    assert all(p.grad is None for p in ctx.policy.parameters())


def test_accumulation_sets_the_epoch_in_optimizer_steps():
    from kuavo_train.data.prepare import fixed_epoch_samples

    cfg = load_config(
        overrides=["training.gradient_accumulation_steps=4", "training.steps_per_epoch=10", "training.batch_size=8"]
    )
    assert fixed_epoch_samples(cfg) == 10 * 8 * 4  # steps x effective batch


@pytest.mark.parametrize("value", ["0", "-2"])
def test_accumulation_below_1_is_a_one_line_error(value):
    with pytest.raises(KuavoError) as info:
        load_config(overrides=[f"training.gradient_accumulation_steps={value}"])
    assert f"training.gradient_accumulation_steps must be >= 1, got {value}" in str(info.value)
    assert "\n" not in str(info.value)
