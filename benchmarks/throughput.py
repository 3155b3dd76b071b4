"""Training throughput: our trainer's step vs. a plain lerobot-train step, same model, same data.

Both sides train the SAME SmolVLA config (same batch size, precision, freezing, initial weights,
learning rate and schedule) on the SAME frames (the stage's training episodes of the converted
v3.0 cache) in one process, one after the other, with the warm-up steps excluded:

  ours     the trainer itself: ``kuavo_train.curriculum.build.build_stage_training``, the function
           StageRunner builds a stage with (``load_policy`` + freezing, ``make_processors`` with the
           merged stats, ``build_training_stream``, ``make_loader``, AdamW + schedule, the
           ``StepContext``), seeded by ``stage_seed``; then StageRunner's epochs (``set_epoch``,
           ``train_epoch``'s step groups) and ``kuavo_train.training.loop.train_step``. Nothing of
           our side is re-implemented here, so the benchmark cannot drift from the trainer.
  lerobot  written the way ``lerobot-train`` (lerobot 0.6.1) does it: ``LeRobotDataset`` of the
           v3.0 cache with ``delta_timestamps`` from the policy config (``return_uint8=True``),
           ``EpisodeAwareSampler``, lerobot's DataLoader settings (prefetch_factor 4, persistent
           workers, ``spawn`` workers), the preprocessor from ``make_smolvla_pre_post_processors``
           with the dataset's stats, then ``loss, _ = policy.forward(batch)``, backward,
           ``clip_grad_norm_`` over ``policy.parameters()``, ``optimizer.step()``,
           ``optimizer.zero_grad()``, ``scheduler.step()`` (AdamW/scheduler built from lerobot's
           ``AdamWConfig``/``CosineDecayWithWarmupSchedulerConfig``; accelerate's single-process
           autocast is ``torch.autocast`` here).

Per configuration it reports the samples each side trained in its measured steps (the same on both
sides unless a side's epoch ends in a short batch within them), samples/s, mean step time (loader
``next()`` + the whole step), data-wait share (time blocked in ``next()`` / step time), peak
memory (CPU: the process's RSS high-water mark, reset per run through /proc/self/clear_refs, read
with getrusage; CUDA: ``torch.cuda.max_memory_allocated``) and ours/lerobot ratios. It also prints
what a GPU memory estimate needs: parameter counts and the bytes of activations saved for backward
per sample.

Default: CPU, the demo config's tiny backbone, the synthetic demo data (``demo_data/``, built if
absent), stage 1, batch 8, 5 warm-up + 30 measured steps, with 0 and 2 loader workers (about 35 s
on 2 cores). Runs go in ABBA order over the worker settings; one untimed step of each side comes
first so lazy imports and caches do not land in the first measured run. Results: docs/performance.md.

    .venv/bin/python benchmarks/throughput.py [--steps 30] [--warmup 5] [--batch-size 8]
        [--num-workers 0 2] [--device cpu|cuda] [--full [--vlm-model-name DIR]] [--memory-only]
        [--video [--video-backend auto|torchcodec|pyav]] [--image-hw 480 640] [--episodes N] [--stage N] [--json PATH]
    .venv/bin/python benchmarks/smolvlm2_architecture.py /tmp/arch   # offline stand-in for --full
    .venv/bin/python benchmarks/throughput.py --full --vlm-model-name /tmp/arch --memory-only --batch-size 4

Other synthetic data than the demo's (``--video``, ``--image-hw``, ``--episodes``) is generated into
a temp dir (or ``--data-dir``). Do not run it beside another training: on a small CPU the two
fight over the cores and every figure is meaningless.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config  # noqa: E402
from kuavo_train.data.video import VIDEO_BACKENDS  # noqa: E402

DEMO_CONFIG = "smolvla_sequential_demo"
TASK_FILES = ["tasks/task1_moving_grasp", "tasks/task2_weighing", "tasks/task3_placement", "tasks/task4_sorting"]
TASK_NAMES = ["moving_grasp", "weighing", "placement", "sorting"]
FULL_VLM = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
DEFAULT_IMAGE_HW = (48, 64)  # the demo data (kuavo_train.demo.assets.DemoDataSize)
DEFAULT_EPISODES = 12
# The base config's architecture (configs/policy/smolvla_sequential_base.yaml), random weights; the freezing comes
# from the recipe.
FULL_POLICY = [
    "policy.load_vlm_weights=false",
    "policy.num_vlm_layers=16",
    "policy.chunk_size=50",
    "policy.n_action_steps=50",
    "policy.resize_imgs_with_padding=[512,512]",
]
# Freezing recipes: the seed's (vision encoder and the lowest 8 VLM layers frozen, connector and the upper layers
# trained), the shipped default (only the vision encoder frozen: docs/benchmarks.md) and lerobot's default for
# SmolVLA (train_expert_only: the whole VLM frozen).
RECIPES = {
    "seed": ["policy.freeze_vlm_layers={half}"],
    "default": ["policy.freeze_vlm_layers=0"],
    "expert_only": ["policy.train_expert_only=true"],
    # LoRA stages (docs/peft.md): an adapter on lerobot's SmolVLA default targets; the lerobot side wraps its
    # policy with lerobot's own wrap_with_peft, as lerobot-train --peft does.
    "lora": ["policy.freeze_vlm_layers=0", "policy.peft.mode=merge"],
}
# Our speed levers, each a config setting of the product: eager attention and no feature cache is "none".
LEVERS = {
    "none": ["policy.attention=eager", "data.feature_cache=off"],
    "sdpa": ["policy.attention=sdpa", "data.feature_cache=off"],
    "cache": ["policy.attention=eager", "data.feature_cache=on"],
    "all": ["policy.attention=sdpa", "data.feature_cache=on"],
    # all + torch.compile (inductor): the compilation lands in the warm-up steps (Result.warmup_s)
    "compile": ["policy.attention=sdpa", "data.feature_cache=on", "training.compile=true"],
}
# Nominal dense bf16 peaks (TFLOP/s) by GPU name, for MFU; --peak-tflops overrides.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "RTX 4090": 165.0}
SEED_EPOCHS = 20  # the seed recipe's epochs per stage, for the whole-stage estimate


# ---- measurement helpers ----------------------------------------------------------------------
def _status_kb(pid: int | str, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _pss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_rss_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> float:
    kb = _status_kb("self", "VmRSS")
    return (kb or 0) / 1024


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def loader_worker_pids(loader) -> list[int]:
    """PIDs of a DataLoader's persistent workers (its private iterator; empty without workers)."""
    return [w.pid for w in getattr(getattr(loader, "_iterator", None), "_workers", []) if w.pid is not None]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def saved_activation_bytes(fn, module: torch.nn.Module) -> int:
    """Bytes of the distinct tensors autograd saves for backward while ``fn()`` runs (one forward),
    not counting ``module``'s own parameters and buffers (the weights are counted apart)."""
    own = {t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers()]}
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor):
        try:
            storage = t.untyped_storage()
            if storage.data_ptr() not in own:
                seen[(storage.data_ptr(), t.device.type)] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            seen[(id(t), "x")] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


# ---- set-up shared by both sides ----------------------------------------------------------------
@dataclass
class Setup:
    cfg: object  # kuavo Config of the benchmarked policy (recipe applied, product-default levers)
    data: object  # CurriculumData
    device: torch.device
    stage: int
    batch_size: int
    seed: int
    recipe: str = "seed"
    overrides: list[str] = field(default_factory=list)  # what cfg was loaded with (levers are added to them)

    def config_with(self, levers: str):
        """``cfg`` with one of LEVERS applied."""
        return load_config(DEFAULT_CONFIG_DIR, DEMO_CONFIG, [*self.overrides, *LEVERS[levers]])


def demo_overrides(
    data_dir: Path, out_dir: Path, stage: int, batch_size: int, device: str, video_backend: str
) -> list[str]:
    overrides = [f"data.roots.{name}={data_dir / f'task{i}_{name}'}" for i, name in enumerate(TASK_NAMES, start=1)]
    overrides += [
        f"policy.vlm_model_name={data_dir / 'tiny_smolvlm'}",
        f"data.cache_dir={data_dir / 'cache'}",
        f"training.output_directory={out_dir}",
        f"task={TASK_FILES[stage - 1]}",
        f"training.batch_size={batch_size}",
        f"training.device={device}",
        f"data.video_backend={video_backend}",
    ]
    return overrides


def full_size_problem(vlm_model_name: str) -> str | None:
    """Why the full SmolVLA architecture cannot be built here (None when it can)."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(vlm_model_name)
    except Exception as exc:  # offline hub / missing files all end here
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"--full needs the config (and tokenizer) of '{vlm_model_name}', which is not available here "
            f"({type(exc).__name__}: {detail}).\n"
            f"Download it once where there is network (`hf download {vlm_model_name} --exclude '*.safetensors'` "
            f"is enough: the weights stay random), then rerun with HF_HUB_OFFLINE=1, or pass "
            f"--vlm-model-name /local/dir/of/SmolVLM2-500M-Video-Instruct. Offline, the same architecture without "
            f"weights: `python benchmarks/smolvlm2_architecture.py DIR`, then --vlm-model-name DIR. GPU timings: "
            f"--full --device cuda; parameter counts and activation bytes on any machine: --full --memory-only."
        )
    return None


def ensure_assets(cfg, args) -> None:
    """The demo assets (backbone + synthetic data) at the asked episodes, camera size and storage."""
    from kuavo_train.demo.assets import DemoDataSize, ensure_demo_assets

    lengths = {} if args.episode_length is None else {"min_len": args.episode_length, "max_len": args.episode_length}
    size = DemoDataSize(num_episodes=args.episodes, image_hw=tuple(args.image_hw), **lengths)
    ensure_demo_assets(cfg, size=size, video=args.video)


def is_default_data(args) -> bool:
    return (
        not args.video
        and list(args.image_hw) == list(DEFAULT_IMAGE_HW)
        and args.episodes == DEFAULT_EPISODES
        and args.episode_length is None
    )


def make_setup(args, tmp: Path, recipe: str = "seed") -> Setup:
    from kuavo_train.data.prepare import prepare_curriculum_data
    from kuavo_train.training.loggers import quiet_third_party_logs

    quiet_third_party_logs()
    if args.data_dir:
        data_dir = Path(args.data_dir).resolve()
    else:  # other synthetic data than demo_data/ holds: a fresh temp dir
        data_dir = REPO_ROOT / "demo_data" if is_default_data(args) else tmp / "data"
    out_dir = tmp / "run"
    base = demo_overrides(data_dir, out_dir, args.stage, args.batch_size, args.device, args.video_backend)
    demo_cfg = load_config(DEFAULT_CONFIG_DIR, DEMO_CONFIG, base)
    started = time.perf_counter()
    ensure_assets(demo_cfg, args)  # no-op when the assets are already there
    data = prepare_curriculum_data(demo_cfg, out_dir)
    storage = "mp4 video" if args.video else "PNG in parquet"
    print(
        f"data ready in {time.perf_counter() - started:.1f}s ({data_dir}: {args.episodes} episodes/task, "
        f"{args.image_hw[0]}x{args.image_hw[1]} {storage})"
    )
    overrides = list(base)
    if args.full:
        precision = "bf16" if args.device.startswith("cuda") else "no"
        overrides += [
            f"policy.vlm_model_name={args.vlm_model_name}",
            *FULL_POLICY,
            f"training.mixed_precision={precision}",
        ]
    layers = load_config(DEFAULT_CONFIG_DIR, DEMO_CONFIG, overrides).policy.num_vlm_layers
    overrides += [item.format(half=layers // 2) for item in RECIPES[recipe]]  # the recipe last: it decides freezing
    cfg = load_config(DEFAULT_CONFIG_DIR, DEMO_CONFIG, overrides)
    from kuavo_train.device import resolve_device

    return Setup(
        cfg=cfg,
        data=data,
        device=resolve_device(args.device),
        stage=args.stage,
        batch_size=args.batch_size,
        seed=cfg.training.seed,
        recipe=recipe,
        overrides=overrides,
    )


def with_workers(cfg, num_workers: int):
    """``cfg`` with ``training.num_workers`` set (the loader setting a run measures)."""
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, num_workers=num_workers))


def build_policy(setup: Setup):
    """The lerobot side's policy: the trainer's ``load_policy`` (model, fp32 weights, freezing) after the
    trainer's stage seed, so its initial weights are those ``build_stage_training`` gives ours; with lerobot's
    own (eager) attention."""
    from kuavo_train.curriculum.build import seed_everything, stage_seed
    from kuavo_train.policy.factory import load_policy

    seed_everything(stage_seed(setup.cfg))
    policy_cfg = dataclasses.replace(setup.cfg.policy, attention="eager")
    policy = load_policy(policy_cfg, setup.data.schema, None, setup.device)
    if policy_cfg.peft.mode == "off":
        return policy
    from kuavo_train.policy.adapters import lora_config

    # wrap_with_peft refuses a policy without a pretrained_path; here it only names the (same) initial weights.
    policy.config.pretrained_path = "benchmark-initial-weights"
    return policy.wrap_with_peft(peft_config=lora_config(policy, policy_cfg.peft))


def batch_samples(batch: dict) -> int:
    """Samples in one loader batch (both sides' batches carry one ``task`` string per sample)."""
    return len(batch["task"])


def total_steps_of(setup: Setup, loader_len: int) -> int:
    return loader_len * setup.cfg.task.training.max_epoch


# ---- the two trainers ------------------------------------------------------------------------
class OursRun:
    """What StageRunner trains with (``build_stage_training``) and how it steps, minus logging/checkpointing."""

    name = "ours"

    def __init__(self, setup: Setup, num_workers: int, levers: str = "all"):
        from kuavo_train.curriculum.build import build_stage_training, seed_everything, stage_seed
        from kuavo_train.training.loop import LoopState

        cfg = with_workers(setup.config_with(levers), num_workers)
        self.setup, self.levers = setup, levers
        seed_everything(stage_seed(cfg))  # as StageRunner._build does
        self.training = build_stage_training(cfg, setup.data, None, setup.device, echo=lambda _line: None)
        caches = self.training.feature_caches
        self.cache_build = (caches.built_frames, caches.seconds) if caches else None
        self.policy, self.loader, self.ctx = self.training.policy, self.training.train_loader, self.training.ctx
        self.state = LoopState()
        self.policy.train()

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.ctx.trainable)

    def batches(self):
        """Endless, as StageRunner's epochs: ``set_epoch``, then the epoch's optimizer steps, each a group of
        ``gradient_accumulation_steps`` loader batches (``train_epoch``'s grouping and per-epoch length)."""
        from kuavo_train.training.loop import epoch_batches

        while True:
            self.training.sampler.set_epoch(self.state.epoch + 1)
            total = epoch_batches(self.training.steps_per_epoch, len(self.loader), self.ctx.accumulation_steps)
            epoch = itertools.islice(iter(self.loader), total)
            while group := list(itertools.islice(epoch, self.ctx.accumulation_steps)):
                yield group
            self.state.epoch += 1

    @staticmethod
    def samples(group: list[dict]) -> int:
        return sum(batch_samples(raw) for raw in group)

    def step(self, group: list[dict]) -> float | None:
        from kuavo_train.training.loop import train_step

        return train_step(self.ctx, group, self.state)

    def forward_only(self, group: list[dict]):
        from kuavo_train.training.loop import batch_loss

        return batch_loss(self.ctx, group[0], self.state.epoch + 1)


class LerobotRun:
    """lerobot-train's dataset/loader/processor/update_policy, single process."""

    name = "lerobot"
    levers = "-"
    cache_build = None

    def __init__(self, setup: Setup, num_workers: int):
        from lerobot.datasets.factory import resolve_delta_timestamps
        from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
        from lerobot.datasets.sampler import EpisodeAwareSampler
        from lerobot.optim.optimizers import AdamWConfig
        from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig
        from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
        from lerobot.utils.collate import lerobot_collate_fn

        cfg = setup.cfg
        self.setup = setup
        task = cfg.tasks[setup.stage - 1]
        root = setup.data.v30_roots[task.id]
        episodes = setup.data.splits[task.id].train  # the same held-out split as ours
        self.policy = build_policy(setup)
        meta = LeRobotDatasetMetadata(f"kuavo/{task.name}", root=root)
        self.dataset = LeRobotDataset(
            f"kuavo/{task.name}",
            root=root,
            episodes=episodes,
            delta_timestamps=resolve_delta_timestamps(self.policy.config, meta),
            return_uint8=True,
            video_backend=setup.data.video_backend,  # the decoder ours resolved, so only the pipelines differ
        )
        self.camera_keys = self.dataset.meta.camera_keys
        self.preprocessor, _ = make_smolvla_pre_post_processors(
            self.policy.config, dataset_stats=self.dataset.meta.stats
        )
        sampler = EpisodeAwareSampler(
            self.dataset.meta.episodes["dataset_from_index"],
            self.dataset.meta.episodes["dataset_to_index"],
            episode_indices_to_use=self.dataset.episodes,
            drop_n_last_frames=getattr(self.policy.config, "drop_n_last_frames", 0),
            shuffle=True,
            seed=setup.seed,
            absolute_to_relative_idx=self.dataset.absolute_to_relative_idx,
        )
        workers = num_workers > 0
        self.loader = torch.utils.data.DataLoader(  # lerobot's TrainPipelineConfig defaults
            self.dataset,
            num_workers=num_workers,
            batch_size=setup.batch_size,
            shuffle=False,
            sampler=sampler,
            pin_memory=setup.device.type == "cuda",
            drop_last=False,
            collate_fn=lerobot_collate_fn if self.dataset.meta.has_language_columns else None,
            prefetch_factor=4 if workers else None,
            persistent_workers=workers,
            multiprocessing_context="spawn" if workers else None,
        )
        lr, opt = cfg.task.training.lr, cfg.policy.optimizer
        self.grad_clip_norm = opt.grad_clip_norm
        self.optimizer = AdamWConfig(
            lr=lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay, grad_clip_norm=opt.grad_clip_norm
        ).build(self.policy.get_optim_params())
        total = max(total_steps_of(setup, len(self.loader)), 1)
        self.scheduler = CosineDecayWithWarmupSchedulerConfig(
            num_warmup_steps=int(cfg.policy.scheduler.warmup_ratio * total),
            num_decay_steps=total,
            peak_lr=lr,
            decay_lr=lr * cfg.policy.scheduler.decay_lr_ratio,
        ).build(self.optimizer, total)
        bf16 = setup.device.type == "cuda" and cfg.training.mixed_precision == "bf16"
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else nullcontext
        self.policy.train()

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.policy.parameters() if p.requires_grad)

    def batches(self):
        """lerobot.utils.utils.cycle over the loader (the sampler advances its epoch itself)."""
        while True:
            yield from self.loader

    @staticmethod
    def samples(batch: dict) -> int:
        return batch_samples(batch)

    def _prepare(self, batch: dict) -> dict:
        for key in self.camera_keys:  # lerobot-train's main loop
            if key in batch and batch[key].dtype == torch.uint8:
                batch[key] = batch[key].to(dtype=torch.float32) / 255.0
        return self.preprocessor(batch)

    def step(self, batch: dict) -> float:
        batch = self._prepare(batch)
        self.policy.train()  # update_policy from here on
        with self.autocast():
            loss, _ = self.policy.forward(batch)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.grad_clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.scheduler.step()
        grad_norm.item()
        return loss.item()

    def forward_only(self, batch: dict):
        batch = self._prepare(batch)
        with self.autocast():
            loss, _ = self.policy.forward(batch)
        return loss


# ---- one measured run -----------------------------------------------------------------------
@dataclass
class Result:
    trainer: str
    recipe: str
    levers: str  # ours: a key of LEVERS; lerobot: "-"
    num_workers: int
    steps: int
    batch_size: int
    samples: int  # trained in the measured steps (warm-up excluded)
    trainable_parameters: int
    samples_per_s: float
    step_ms_mean: float
    step_ms_median: float
    data_wait_ms_mean: float
    data_wait_share: float
    peak_rss_mib: float | None
    rss_added_mib: float | None
    workers_pss_mib: float | None
    cuda_peak_mib: float | None
    setup_s: float
    warmup_s: float
    final_loss: float | None
    step_ms: list[float] = field(default_factory=list)
    cache_frames_built: int | None = None  # ours with the feature cache: frames embedded while it was set up
    cache_build_s: float | None = None
    flops_per_step: int | None = None  # model FLOPs of one step (FlopCounterMode), with --flops
    achieved_tflops: float | None = None


def measure(kind, setup: Setup, num_workers: int, steps: int, warmup: int, count_flops: bool = False) -> Result:
    """``kind``: LerobotRun, or a function (setup, workers) -> OursRun with its levers. ``count_flops``: one more
    warm-up step, run under ``torch.utils.flop_counter.FlopCounterMode``, gives the model FLOPs of a step."""
    device = setup.device
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rss_start = rss_mib()
    can_reset = reset_rss_peak()
    started = time.perf_counter()
    run = kind(setup, num_workers)
    setup_s = time.perf_counter() - started
    batches = run.batches()
    started = time.perf_counter()
    for _ in range(warmup):
        run.step(next(batches))
    sync(device)
    warmup_s = time.perf_counter() - started
    flops = None
    if count_flops:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            run.step(next(batches))
        sync(device)
        flops = counter.get_total_flops()
    waits, totals, loss, samples = [], [], None, 0
    for _ in range(steps):
        t0 = time.perf_counter()
        raw = next(batches)
        t1 = time.perf_counter()
        loss = run.step(raw)
        sync(device)
        t2 = time.perf_counter()
        waits.append(t1 - t0)
        totals.append(t2 - t0)
        samples += run.samples(raw)
    workers_pss = None
    pids = loader_worker_pids(run.loader)
    if pids:
        pss = [_pss_kb(pid) for pid in pids]
        workers_pss = sum(p for p in pss if p) / 1024
    peak = rss_peak_mib() if can_reset else None
    cuda_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    total = sum(totals)
    result = Result(
        trainer=run.name,
        recipe=setup.recipe,
        levers=run.levers,
        num_workers=num_workers,
        steps=steps,
        batch_size=setup.batch_size,
        samples=samples,
        trainable_parameters=run.trainable_parameters,
        samples_per_s=samples / total if total else math.nan,
        step_ms_mean=1000 * total / max(steps, 1),
        step_ms_median=1000 * sorted(totals)[len(totals) // 2] if totals else math.nan,
        data_wait_ms_mean=1000 * sum(waits) / max(steps, 1),
        data_wait_share=sum(waits) / total if total else math.nan,
        peak_rss_mib=peak,
        rss_added_mib=None if peak is None else peak - rss_start,
        workers_pss_mib=workers_pss,
        cuda_peak_mib=cuda_peak,
        setup_s=setup_s,
        warmup_s=warmup_s,
        final_loss=None if loss is None else float(loss),
        step_ms=[round(1000 * t, 2) for t in totals],
        cache_frames_built=run.cache_build[0] if run.cache_build else None,
        cache_build_s=run.cache_build[1] if run.cache_build else None,
        flops_per_step=flops,
        achieved_tflops=None if flops is None or not total else flops * steps / total / 1e12,
    )
    _shutdown(run, batches)
    return result


def _shutdown(run, batches) -> None:
    batches.close()
    iterator = getattr(run, "iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    del run
    gc.collect()


def stage_frames(setup: Setup) -> dict:
    """Frames of the stage: its training frames per task, and all the frames it reads (what the cache embeds)."""
    from kuavo_train.curriculum.features import frames_read
    from kuavo_train.curriculum.plan import episode_frames

    cfg, data = setup.cfg, setup.data
    train = {t: episode_frames(data, t, data.splits[t].train) for t in cfg.replay_mix()}
    cached = sum(
        min(episode_frames(data, r.task_id, r.episodes), r.max_samples or math.inf) for r in frames_read(cfg, data)
    )
    return {"train_frames": train, "cached_frames": int(cached)}


def prime(setup: Setup) -> None:
    """One untimed step of each side first: lazy imports, tokenizer and arrow maps are then loaded
    before any measured run, so the first run's memory and timings do not carry them (ours without the
    feature cache: a measured run builds it and reports the build)."""
    for kind in (partial(OursRun, levers="sdpa"), LerobotRun):
        run = kind(setup, 0)
        batches = run.batches()
        run.step(next(batches))
        _shutdown(run, batches)


# ---- memory model inputs ----------------------------------------------------------------------
def memory_model(setup: Setup, batch_size: int) -> dict:
    """Parameter counts and the activations saved for backward per sample (one forward, ours and lerobot)."""
    from kuavo_train.policy.factory import count_parameters

    out = {}
    run = OursRun(setup, 0)
    counts = count_parameters(run.policy)
    out["parameters_total"], out["parameters_trainable"] = counts.total, counts.trainable
    batches = run.batches()
    raw = next(batches)
    out["activation_bytes_per_sample_ours"] = (
        saved_activation_bytes(lambda: run.forward_only(raw), run.policy) / batch_size
    )
    _shutdown(run, batches)
    run = LerobotRun(setup, 0)
    batches = run.batches()
    raw = next(batches)
    out["activation_bytes_per_sample_lerobot"] = (
        saved_activation_bytes(lambda: run.forward_only(raw), run.policy) / batch_size
    )
    _shutdown(run, batches)
    # Static training state of AdamW in fp32: weights (all) + grads + two moments (trainable).
    out["static_bytes_fp32_adamw"] = 4 * counts.total + (4 + 8) * counts.trainable
    return out


# Assumed, not measured: CUDA context + cuBLAS workspace + caching-allocator slack, and the card
# memory left to one process (nominal size minus what the driver and a desktop may hold).
ESTIMATE_OVERHEAD_MIB = 1024
CARDS_MIB = {"16 GB": 16384 - 512, "24 GB": 24576 - 512}
ESTIMATE_BATCHES = (4, 8, 16, 32)


def gpu_memory_estimate(model: dict) -> dict:
    """Peak GPU memory of a bf16-autocast run per batch size, from this run's parameter counts and
    saved-activation bytes (docs/performance.md, "Estimating memory"): static + A x B + overhead."""
    static = model["static_bytes_fp32_adamw"] + 2 * model["parameters_trainable"]  # + the bf16 autocast weight cache
    per_sample = max(model["activation_bytes_per_sample_ours"], model["activation_bytes_per_sample_lerobot"])
    mib = 2**20
    peak = {b: (static + per_sample * b) / mib + ESTIMATE_OVERHEAD_MIB for b in ESTIMATE_BATCHES}
    largest = {
        card: int((free - ESTIMATE_OVERHEAD_MIB - static / mib) // (per_sample / mib))
        for card, free in CARDS_MIB.items()
    }
    return {
        "static_mib": static / mib,
        "activation_mib_per_sample": per_sample / mib,
        "overhead_mib": ESTIMATE_OVERHEAD_MIB,
        "peak_mib_by_batch": peak,
        "largest_batch": largest,
    }


def format_estimate(estimate: dict) -> str:
    lines = [
        f"GPU memory estimate (bf16 autocast; static {estimate['static_mib']:.0f} MiB + "
        f"{estimate['activation_mib_per_sample']:.1f} MiB/sample + {estimate['overhead_mib']} MiB assumed overhead; "
        "the activation bytes were counted in this run's precision, an upper bound for bf16):",
        "| batch | " + " | ".join(str(b) for b in estimate["peak_mib_by_batch"]) + " |",
        "|---|" + "---:|" * len(estimate["peak_mib_by_batch"]),
        "| peak GiB | " + " | ".join(f"{v / 1024:.1f}" for v in estimate["peak_mib_by_batch"].values()) + " |",
        "largest batch: " + ", ".join(f"{card} card {b}" for card, b in estimate["largest_batch"].items()),
    ]
    return "\n".join(lines)


# ---- report -------------------------------------------------------------------------------------
def _fmt(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def format_table(results: list[Result], device: torch.device) -> str:
    mem = "CUDA peak MiB" if device.type == "cuda" else "peak RSS MiB (+added)"
    lines = [
        f"| recipe | workers | trainer | levers | samples | samples/s | step ms (mean / median) | data wait ms "
        f"| data-wait share | {mem} | worker PSS MiB | cache build | set-up s | warm-up s |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        memory = (
            _fmt(r.cuda_peak_mib, ".0f")
            if device.type == "cuda"
            else f"{_fmt(r.peak_rss_mib, '.0f')} (+{_fmt(r.rss_added_mib, '.0f')})"
        )
        build = "-" if r.cache_build_s is None else f"{r.cache_frames_built} frames in {r.cache_build_s:.1f} s"
        lines.append(
            f"| {r.recipe} | {r.num_workers} | {r.trainer} | {r.levers} | {r.samples} | {r.samples_per_s:.2f} | "
            f"{r.step_ms_mean:.1f} / {r.step_ms_median:.1f} | "
            f"{r.data_wait_ms_mean:.1f} | {100 * r.data_wait_share:.1f}% | {memory} | "
            f"{_fmt(r.workers_pss_mib, '.0f')} | {build} | {r.setup_s:.1f} | {r.warmup_s:.1f} |"
        )
    return "\n".join(lines)


def ratios(results: list[Result]) -> list[dict]:
    """Per recipe, worker count and levers of ours: ours/lerobot samples/s, step time and peak memory against the
    lerobot run of the same recipe and worker count (None: not measured)."""
    rows = []
    lerobot = {(r.recipe, r.num_workers): r for r in results if r.trainer == "lerobot"}
    for ours in (r for r in results if r.trainer == "ours"):
        ler = lerobot.get((ours.recipe, ours.num_workers))
        if ler is None:
            continue
        mem_o = ours.cuda_peak_mib if ours.cuda_peak_mib is not None else ours.peak_rss_mib
        mem_l = ler.cuda_peak_mib if ler.cuda_peak_mib is not None else ler.peak_rss_mib
        rows.append(
            {
                "recipe": ours.recipe,
                "num_workers": ours.num_workers,
                "levers": ours.levers,
                "samples": {"ours": ours.samples, "lerobot": ler.samples},
                "samples_per_s": ours.samples_per_s / ler.samples_per_s,
                "step_time": ours.step_ms_mean / ler.step_ms_mean,
                "peak_memory": mem_o / mem_l if mem_o and mem_l else None,
            }
        )
    return rows


def format_ratios(rows: list[dict]) -> str:
    lines = [
        "| recipe | workers | levers | samples/s ours/lerobot | step time ours/lerobot | peak memory ours/lerobot |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['recipe']} | {row['num_workers']} | {row['levers']} | {row['samples_per_s']:.3f} | "
            f"{row['step_time']:.3f} | {_fmt(row['peak_memory'], '.3f')} |"
        )
    return "\n".join(lines)


def peak_tflops(args) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if not torch.cuda.is_available() or not args.device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(0)
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def format_flops(results: list[Result], peak: float | None) -> str:
    lines = [
        f"| recipe | workers | trainer | levers | GFLOP/step | TFLOP/s | MFU (peak {_fmt(peak, '.0f')} TFLOP/s) |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for r in results:
        mfu = None if peak is None or r.achieved_tflops is None else f"{100 * r.achieved_tflops / peak:.1f}%"
        gflops = None if r.flops_per_step is None else r.flops_per_step / 1e9
        lines.append(
            f"| {r.recipe} | {r.num_workers} | {r.trainer} | {r.levers} | {_fmt(gflops, '.1f')} | "
            f"{_fmt(r.achieved_tflops, '.3f')} | {mfu or '-'} |"
        )
    return "\n".join(lines)


def stage_estimates(results: list[Result], setup_by_recipe: dict, epochs: int = SEED_EPOCHS) -> list[dict]:
    """Hours of training (no validation) for ``epochs`` epochs of the stage's training frames at each run's
    measured step time, plus, for ours with the cache, embedding the stage's frames at the measured build rate."""
    rates = {}  # (recipe, level-deciding levers) -> seconds per embedded frame
    for r in results:
        if r.cache_frames_built:
            rates[r.recipe] = r.cache_build_s / r.cache_frames_built
    rows = []
    for r in results:
        setup = setup_by_recipe[r.recipe]
        frames = sum(setup["train_frames"].values())
        steps = math.ceil(frames / r.batch_size) * epochs
        train_s = steps * r.step_ms_mean / 1000
        build_s = None
        if r.cache_build_s is not None and r.recipe in rates:
            build_s = rates[r.recipe] * setup["cached_frames"]
        rows.append(
            {
                "recipe": r.recipe,
                "num_workers": r.num_workers,
                "trainer": r.trainer,
                "levers": r.levers,
                "epochs": epochs,
                "steps": steps,
                "training_s": train_s,
                "cache_build_s": build_s,
                "total_s": train_s + (build_s or 0.0),
            }
        )
    return rows


def format_estimates(rows: list[dict]) -> str:
    lines = [
        "| recipe | workers | trainer | levers | steps | training h | cache build h | total h |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        build = "-" if row["cache_build_s"] is None else f"{row['cache_build_s'] / 3600:.3f}"
        lines.append(
            f"| {row['recipe']} | {row['num_workers']} | {row['trainer']} | {row['levers']} | {row['steps']} | "
            f"{row['training_s'] / 3600:.3f} | {build} | {row['total_s'] / 3600:.3f} |"
        )
    return "\n".join(lines)


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = None
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        pass
    info = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": None if mem_kb is None else round(mem_kb / 2**20, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import lerobot

        info["lerobot"] = getattr(lerobot, "__version__", "?")
    except ImportError:
        pass
    return info


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=30, help="measured steps per run (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up steps per run, not measured (default 5)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per step on both sides (default 8)")
    p.add_argument(
        "--num-workers", type=int, nargs="+", default=[0, 2], help="loader worker counts to run (default 0 2)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument(
        "--stage",
        type=int,
        default=1,
        choices=[1, 2, 3, 4],
        help="curriculum stage (1: task 1 only; 2-4 add replay of earlier tasks on our side)",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="the full-size SmolVLA architecture (base config) with random weights; needs the SmolVLM2 config",
    )
    p.add_argument("--vlm-model-name", default=FULL_VLM, help="VLM backbone for --full (hub id or local dir)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="assets dir (built if absent); default demo_data/ for the default data, else a temp dir",
    )
    p.add_argument("--video", action="store_true", help="synthetic cameras as mp4 video instead of PNG in parquet")
    p.add_argument(
        "--image-hw",
        type=int,
        nargs=2,
        default=list(DEFAULT_IMAGE_HW),
        metavar=("H", "W"),
        help="synthetic camera size (default 48 64; the real Kuavo cameras are 480 640)",
    )
    p.add_argument(
        "--video-backend",
        default="auto",
        choices=VIDEO_BACKENDS,
        help="mp4 decoder of both sides (data.video_backend; default auto: torchcodec when FFmpeg loads)",
    )
    p.add_argument("--episodes", type=int, default=DEFAULT_EPISODES, help="synthetic episodes per task (default 12)")
    p.add_argument("--no-memory-model", action="store_true", help="skip the activation-bytes measurement")
    p.add_argument(
        "--memory-only",
        action="store_true",
        help="only parameter counts and activation bytes (no timed runs; works on CPU, e.g. with --full)",
    )
    p.add_argument(
        "--recipe",
        nargs="+",
        default=["seed"],
        choices=list(RECIPES),
        help="freezing recipes to run (default seed: the guide's, 8 of 16 VLM layers frozen; default: the shipped "
        "default, none frozen; expert_only: lerobot's default for SmolVLA)",
    )
    p.add_argument(
        "--levers",
        nargs="+",
        default=["all"],
        choices=list(LEVERS),
        help="our speed levers, one run each (default all = the product's defaults): none (eager attention, "
        "no feature cache), sdpa, cache, all, compile (all + training.compile; compiles in the warm-up)",
    )
    p.add_argument(
        "--episode-length", type=int, default=None, help="frames per synthetic episode (default: the demo's 40-60)"
    )
    p.add_argument("--flops", action="store_true", help="count a step's model FLOPs; TFLOP/s and MFU")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak for MFU")
    p.add_argument("--json", help="also write the results as JSON here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda but CUDA is not available here; GPU figures cannot be measured on this machine.")
        return 2
    if args.full:
        problem = full_size_problem(args.vlm_model_name)
        if problem:
            print(problem)
            return 2
    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    with tempfile.TemporaryDirectory(prefix="kuavo_throughput_") as tmp:
        results: list[Result] = []
        frames_by_recipe = {}
        for recipe in args.recipe:
            setup = make_setup(args, Path(tmp), recipe)
            frames_by_recipe[recipe] = stage_frames(setup)
            if args.full and setup.device.type == "cpu":
                print("note: --full on CPU is very slow; use a GPU for timings")
            if not args.memory_only and not results:  # once: imports and caches are warm for every recipe
                prime(setup)
            for index, workers in enumerate([] if args.memory_only else args.num_workers):
                # ABBA order over the worker settings, so drift (thermal, leftovers) does not favour one side.
                ours = [(f"ours ({levers})", partial(OursRun, levers=levers)) for levers in args.levers]
                kinds = [*ours, ("lerobot", LerobotRun)]
                for name, kind in kinds if index % 2 == 0 else reversed(kinds):
                    print(
                        f"-- {recipe}: {name}, {workers} workers: {args.warmup} warm-up + {args.steps} measured "
                        "steps ...",
                        flush=True,
                    )
                    result = measure(kind, setup, workers, args.steps, args.warmup, count_flops=args.flops)
                    print(
                        f"   {result.samples_per_s:.2f} samples/s, {result.step_ms_mean:.1f} ms/step, "
                        f"data wait {100 * result.data_wait_share:.1f}%, loss {result.final_loss}",
                        flush=True,
                    )
                    results.append(result)
        model = None if args.no_memory_model and not args.memory_only else memory_model(setup, args.batch_size)
    cfg = setup.cfg
    title = (
        f"{'full-size' if args.full else 'demo (tiny backbone)'} SmolVLA, stage {args.stage}, "
        f"recipes {', '.join(args.recipe)}, "
        f"batch {args.batch_size}, "
        f"{cfg.policy.num_vlm_layers} VLM layers ({cfg.policy.freeze_vlm_layers} frozen), "
        f"chunk {cfg.policy.chunk_size}, "
        f"images {args.image_hw[0]}x{args.image_hw[1]} "
        f"{f'mp4 ({setup.data.video_backend})' if args.video else 'PNG'} "
        f"-> {cfg.policy.resize_imgs_with_padding[0]}px, "
        f"precision {cfg.training.mixed_precision}, device {setup.device}"
    )
    print("\n" + title)
    comparison = ratios(results)
    estimates = stage_estimates(results, frames_by_recipe)
    if results:
        print(format_table(results, setup.device))
        print()
        print(format_ratios(comparison))
        print(
            f"\nWhole-stage estimate, {SEED_EPOCHS} epochs (the seed's) of this stage's training frames at the "
            "measured step times, plus embedding every frame the stage reads at the measured build rate "
            "(no validation):"
        )
        print(format_estimates(estimates))
        if args.flops:
            print("\nModel FLOPs of one training step (FlopCounterMode) and the rate the measured steps reached:")
            print(format_flops(results, peak_tflops(args)))
        unequal = [row for row in comparison if row["samples"]["ours"] != row["samples"]["lerobot"]]
        for row in unequal:
            print(
                f"note: with {row['num_workers']} workers the sides trained {row['samples']['ours']} (ours) and "
                f"{row['samples']['lerobot']} (lerobot) samples: an epoch ended in a short batch; "
                "samples/s counts each side's own"
            )
    if model:
        print(
            f"\nparameters: {model['parameters_trainable']:,} trainable of {model['parameters_total']:,}; "
            f"static fp32 AdamW state {model['static_bytes_fp32_adamw'] / 2**20:.1f} MiB; "
            "activations saved for backward "
            f"{model['activation_bytes_per_sample_ours'] / 2**20:.2f} MiB/sample (ours), "
            f"{model['activation_bytes_per_sample_lerobot'] / 2**20:.2f} MiB/sample (lerobot)"
        )
        model["gpu_estimate"] = gpu_memory_estimate(model)
        print("\n" + format_estimate(model["gpu_estimate"]))
    if args.json:
        payload = {
            "machine": info,
            "args": vars(args),
            "title": title,
            "results": [asdict(r) for r in results],
            "ratios": comparison,
            "stage_frames": frames_by_recipe,
            "stage_estimates": estimates,
            "memory_model": model,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
