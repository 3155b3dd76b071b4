"""One optimizer step and one epoch of a stage; periodic work is decided by the stage runner."""

from __future__ import annotations

import itertools
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial

import torch
from tqdm import tqdm

from kuavo_train.data.constants import ACTION_DIM_MASK, SAMPLE_SEED
from kuavo_train.errors import KuavoError
from kuavo_train.policy.loss import fixed_noise_and_time, per_sample_loss, prepare_batch
from kuavo_train.training.distributed import DistContext

# Test-only hook (tests/e2e/test_resume.py), never set in a real run: KUAVO_TEST_KILL_AFTER_STEP=N makes the
# process send itself SIGKILL right after optimizer step N of a stage is done (its loss counted);
# KUAVO_TEST_KILL_AFTER_STEP=N:SIGTERM sends SIGTERM instead (the graceful stop that saves last/). Read once, at import.
TEST_KILL_ENV = "KUAVO_TEST_KILL_AFTER_STEP"


def _test_kill_point(value: str | None) -> tuple[int, signal.Signals] | None:
    if not value:
        return None
    step, _, name = value.partition(":")
    return int(step), signal.Signals[name or "SIGKILL"]


_TEST_KILL = _test_kill_point(os.environ.get(TEST_KILL_ENV))


def make_autocast(device: torch.device, mixed_precision: str):
    """bf16 autocast on CUDA when asked; fp32 elsewhere."""
    if device.type == "cuda" and mixed_precision == "bf16":
        return partial(torch.autocast, device_type="cuda", dtype=torch.bfloat16)
    return nullcontext


def precision_label(device: torch.device, mixed_precision: str) -> str:
    """What `make_autocast` does, in words for the stage header."""
    if device.type == "cuda" and mixed_precision == "bf16":
        return "bf16 autocast (fp32 weights)"
    if mixed_precision == "bf16":
        return "fp32 (bf16 autocast is CUDA-only)"
    return "fp32"


@dataclass
class LoopState:
    """What a stage's training loop carries across epochs (saved in ``last/`` for resume)."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps done in this stage
    # Loader batches (micro-batches) of epoch `epoch + 1` already trained (resume mid-epoch); a stop
    # comes only between optimizer steps, so with gradient accumulation this is a whole number of steps.
    batches_into_epoch: int = 0
    epoch_loss_sum: float = 0.0  # running sum/count of that epoch's training losses
    epoch_loss_count: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    consecutive_nonfinite: int = 0
    skipped_steps: int = 0
    validations: list[dict] = field(default_factory=list)  # {"epoch", "step", "losses": {task: loss}}
    train_losses: list[float] = field(default_factory=list)  # mean train loss per epoch
    seconds_training: float = 0.0
    seconds_validating: float = 0.0
    seconds_checkpointing: float = 0.0


@dataclass
class StepContext:
    policy: object
    preprocessor: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    device: torch.device
    grad_clip_norm: float
    autocast: object
    max_consecutive_nonfinite: int
    trainable: list = field(default_factory=list)
    seed: int = 0
    dist: DistContext = field(default_factory=DistContext)
    # Loader batches (micro-batches) per optimizer step: ``training.gradient_accumulation_steps``.
    accumulation_steps: int = 1


def training_noise(ctx: StepContext, seeds: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow-matching noise/time drawn per sample from (sample, epoch, seed): a step's result does not
    depend on how the global batch is split across processes, nor on where a run was resumed."""
    mixed = seeds.long() * 1_000_003 + epoch * 7919 + ctx.seed
    config = ctx.policy.config
    return fixed_noise_and_time(mixed, config.chunk_size, config.max_action_dim, ctx.device)


def batch_loss(ctx: StepContext, raw: dict, epoch: int) -> torch.Tensor:
    """The mean training loss of one loader batch in epoch ``epoch`` (1-based): what `train_step` back-propagates."""
    batch, side = prepare_batch(raw, ctx.preprocessor, ctx.device)
    noise, time_ = training_noise(ctx, side[SAMPLE_SEED], epoch)
    with ctx.autocast():
        dim_mask = side[ACTION_DIM_MASK].to(ctx.device)
        return per_sample_loss(ctx.policy, batch, dim_mask, noise=noise, time=time_, side=side).mean()


def train_step(ctx: StepContext, raw_batches: dict | list[dict], state: LoopState) -> float | None:
    """One optimizer step over one loader batch or a list of them (gradient accumulation); returns
    the mean loss of its micro-batches, or None when a non-finite loss/gradient skipped the step.

    Each of the k micro-batches' loss is scaled by 1/k, so the gradient is that of the mean over
    the k micro-batches (equal batches: exactly the gradient of one k-times larger batch). The
    gradients are averaged across processes, clipped and checked once, after the last micro-batch.

    The host waits for the device once per step: one transfer of (loss, gradient norm), read to decide whether
    the step is taken (a non-finite loss gives non-finite gradients, so the norm catches both) and to log the
    loss. Nothing else in the step reads a device value."""
    micro_batches = [raw_batches] if isinstance(raw_batches, dict) else list(raw_batches)
    scale = 1.0 / len(micro_batches)
    ctx.optimizer.zero_grad(set_to_none=True)
    step_loss = torch.zeros((), device=ctx.device)
    for raw in micro_batches:
        loss = batch_loss(ctx, raw, state.epoch + 1)
        (loss * scale).backward()
        step_loss += loss.detach().float() * scale
    step_loss = ctx.dist.all_reduce_sum(step_loss) / ctx.dist.world_size
    ctx.dist.average_gradients(ctx.trainable)
    grad_norm = torch.nn.utils.clip_grad_norm_(
        ctx.trainable, ctx.grad_clip_norm if ctx.grad_clip_norm > 0 else math.inf
    )
    loss_value, norm_value = torch.stack([step_loss, grad_norm.float().to(step_loss.device)]).tolist()
    if not (math.isfinite(loss_value) and math.isfinite(norm_value)):  # the same on every rank: all skip together
        return _skip_nonfinite(ctx, state)
    ctx.optimizer.step()
    ctx.scheduler.step()
    state.step += 1
    state.consecutive_nonfinite = 0
    return loss_value


def _skip_nonfinite(ctx: StepContext, state: LoopState) -> None:
    ctx.optimizer.zero_grad(set_to_none=True)
    state.skipped_steps += 1
    state.consecutive_nonfinite += 1
    if state.consecutive_nonfinite >= ctx.max_consecutive_nonfinite:
        raise KuavoError(
            f"{state.consecutive_nonfinite} optimizer steps in a row had a non-finite loss or gradient "
            f"(step {state.step}); "
            "the last good checkpoint is kept. Lower the lr, check the data with `kuavo-train check-data`, "
            "or use training.mixed_precision=no"
        )
    return None


class StopRequest:
    """Set by SIGTERM/SIGINT; the loop stops after the current step so a resumable state can be saved."""

    def __init__(self):
        self.signal: int | None = None

    def __call__(self, signum, _frame) -> None:
        self.signal = signum

    @property
    def requested(self) -> bool:
        return self.signal is not None


def epoch_batches(steps: int, loader_batches: int, accumulation_steps: int) -> int:
    """Loader batches an epoch of ``steps`` optimizer steps consumes (the last step may take fewer)."""
    return min(steps * accumulation_steps, loader_batches)


def train_epoch(
    ctx: StepContext, loader, state: LoopState, total: int, log_scalar, desc: str, stop: StopRequest | None = None
) -> list[float]:
    """Train the rest of the epoch (``total`` optimizer steps in all, each of
    ``ctx.accumulation_steps`` loader batches; ``state.batches_into_epoch`` batches done); returns
    the losses of this call. Stops early, between optimizer steps, when ``stop`` is requested."""
    ctx.policy.train()
    losses = []
    total_batches = epoch_batches(total, len(loader), ctx.accumulation_steps)
    bar = tqdm(
        total=total_batches,
        initial=state.batches_into_epoch,
        desc=desc,
        leave=False,
        dynamic_ncols=True,
        mininterval=1.0,
        disable=not sys.stderr.isatty(),
    )
    start, samples = time.perf_counter(), 0
    batches = iter(loader)
    while state.batches_into_epoch < total_batches and not (stop is not None and ctx.dist.any(stop.requested)):
        wanted = min(ctx.accumulation_steps, total_batches - state.batches_into_epoch)
        group = list(itertools.islice(batches, wanted))
        if not group:
            break
        loss = train_step(ctx, group, state)
        state.batches_into_epoch += len(group)
        samples += sum(len(raw["task"]) for raw in group)
        if loss is not None:
            losses.append(loss)
            state.epoch_loss_sum += loss
            state.epoch_loss_count += 1
            lr = ctx.scheduler.get_last_lr()[0]
            log_scalar("train/loss", loss, state.step)
            log_scalar("train/lr", lr, state.step)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", sps=f"{samples / (time.perf_counter() - start):.1f}")
        bar.update(len(group))
        if _TEST_KILL is not None and loss is not None and state.step == _TEST_KILL[0]:
            os.kill(os.getpid(), _TEST_KILL[1])  # test-only, see TEST_KILL_ENV
    bar.close()
    return losses
