"""Typed configuration: the YAML files are converted once into these dataclasses (see load.py).

Every field is documented here; the YAML files under ``configs/policy/`` carry the defaults a user
edits. Semantic checks (sums, ranges, cross-field rules) live in ``validate.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# data.video_backend values: auto (torchcodec when FFmpeg's libraries load, else pyav), torchcodec, pyav.
FEATURE_CACHE_MODES = ("auto", "on", "off")
VIDEO_BACKENDS = ("auto", "torchcodec", "pyav")
DEFAULT_CAMERAS = [
    "observation.images.head_cam_h",
    "observation.images.wrist_cam_l",
    "observation.images.wrist_cam_r",
]


@dataclass
class TaskDataConfig:
    # LeRobot dataset dir: v2.1 as the Kuavo exporter writes it, or v3.0.
    root: str = "???"
    # Label of the dataset inside lerobot (local data needs no hub).
    repo_id: str = "kuavo/task"
    # Episode ids to use (None = all). Validation episodes are drawn from these.
    episodes_to_use: list[int] | None = None
    # Camera keys this task needs; a dataset lacking one is an error.
    cameras: list[str] = field(default_factory=lambda: list(DEFAULT_CAMERAS))
    # Expected state/action sizes; None = take them from the data.
    state_dim: int | None = None
    # Expected action size (16 arms + claws; 20 with the 4 walking commands); None = from the data.
    action_dim: int | None = None


@dataclass
class TaskTrainingConfig:
    # Epochs of this stage (an epoch = the current task's training frames / its replay share).
    max_epoch: int = 20
    # Peak learning rate of this stage (lower for later stages: anti-forgetting).
    lr: float = 1e-4
    # Start this stage from this checkpoint instead of the previous stage's best/ (None = default chain).
    pretrained_path: str | None = None


@dataclass
class TaskConfig:
    # Task id used in replay keys (`task{id}`), TensorBoard tags and results.
    id: int = 0
    # Short name; the stage output dir is `task{id}_{name}`.
    name: str = "???"
    # Position in the curriculum (1 = first); must match the order in `curriculum`.
    stage: int | None = None
    # Human description of the task.
    description: str = ""
    # The instruction the policy is trained with and selected by at inference.
    language_instruction: str = "???"
    data: TaskDataConfig = field(default_factory=TaskDataConfig)
    training: TaskTrainingConfig = field(default_factory=TaskTrainingConfig)

    @property
    def key(self) -> str:
        """Replay-ratio key of this task, e.g. ``task2``."""
        return f"task{self.id}"

    @property
    def dirname(self) -> str:
        """Output sub-directory of this task's stage, e.g. ``task2_weighing``."""
        return f"task{self.id}_{self.name}"


@dataclass
class OptimizerConfig:
    # AdamW beta1, beta2.
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    # AdamW epsilon.
    eps: float = 1e-8
    # AdamW decoupled weight decay.
    weight_decay: float = 1e-10
    # Gradient norm clip (0 = off).
    grad_clip_norm: float = 10.0


@dataclass
class SchedulerConfig:
    # Linear warmup share of the stage's optimizer steps.
    warmup_ratio: float = 0.05
    # Final lr of the cosine decay as a fraction of the stage's peak lr.
    decay_lr_ratio: float = 0.1


@dataclass
class PeftSettings:
    # LoRA stages (docs/peft.md). "off": full weights (as frozen above). "merge": each stage trains a fresh adapter
    # on its replay mix, merged into the weights at the end (best/ is a plain lerobot checkpoint). "per_task": each
    # stage trains its own adapter, earlier ones stay untouched; best/ = base + adapter bank + task table, and the
    # wrapper routes each instruction to its task's adapter. With an adapter the freezing flags above no longer
    # decide what trains: only the adapter does.
    mode: str = "off"
    # LoRA rank r of each adapted weight (its update is alpha / r * B @ A, A: r x in, B: out x r).
    rank: int = 16
    # LoRA scale alpha (alpha = rank: the update enters at scale 1).
    alpha: float = 16.0
    # Dropout on the adapter's input while training.
    dropout: float = 0.0
    # Modules to adapt: a regex over module names, or null = lerobot's SmolVLA defaults (the action expert's q/v
    # projections plus the state/action/time projections).
    targets: str | None = None


@dataclass
class PolicyConfig:
    # Where stage 1 starts: hub id, local dir, or None (fresh SmolVLA on `vlm_model_name`).
    # Later stages start from the previous stage's best/ unless this is set explicitly for them.
    pretrained_path: str | None = "lerobot/smolvla_base"
    # VLM backbone (hub id or local dir) used when building SmolVLA fresh; also the tokenizer.
    vlm_model_name: str = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
    # Load the VLM's pretrained weights when building fresh (False = random VLM weights).
    load_vlm_weights: bool = True
    # Freeze the SigLIP vision encoder.
    freeze_vision_encoder: bool = True
    # Also freeze SmolVLM's connector (the projection of SigLIP's output into the language model); with a frozen
    # vision encoder the whole image embedding is then fixed: data.feature_cache stores it ~13x smaller (26x bf16).
    freeze_connector: bool = False
    # Train only the action expert (freezes the whole VLM; then freeze_vlm_layers has no effect).
    train_expert_only: bool = False
    # Freeze the lowest N text layers of the VLM (used when train_expert_only is False).
    freeze_vlm_layers: int = 0
    # Number of VLM text layers SmolVLA keeps.
    num_vlm_layers: int = 16
    # Actions predicted per forward pass / executed per chunk.
    chunk_size: int = 50
    # Actions of each predicted chunk executed before predicting again.
    n_action_steps: int = 50
    # SmolVLA pads state/action vectors to these sizes.
    max_state_dim: int = 32
    # SmolVLA pads action vectors to this size (fixed by the pretrained base).
    max_action_dim: int = 32
    # Images are resized (with padding) to this (width, height) before the vision encoder.
    resize_imgs_with_padding: list[int] = field(default_factory=lambda: [512, 512])
    # Flow-matching denoising steps at inference.
    num_steps: int = 10
    # Max language tokens.
    tokenizer_max_length: int = 48
    # Attention of the VLM + action expert: "sdpa" (torch's fused scaled_dot_product_attention, same results
    # as eager within fp tolerance, less memory) or "eager" (lerobot's own). Saved checkpoints are the same.
    attention: str = "sdpa"
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    peft: PeftSettings = field(default_factory=PeftSettings)

    def exact_feature_cache_level(self) -> str | None:
        """The deepest image embedding this freezing keeps fixed while training: "connector" (SigLIP and
        connector frozen), "vision" (SigLIP frozen) or None (the vision encoder trains: nothing to cache)."""
        if self.train_expert_only or (self.freeze_vision_encoder and self.freeze_connector):
            return "connector"
        return "vision" if self.freeze_vision_encoder else None


@dataclass
class WandbConfig:
    # Also log to Weights & Biases (rank 0, one run per stage, grouped by the output dir's name):
    # train/loss, train/lr, validation/task{N}_loss and the resolved config (package: wandb, the optional extra
    # `pip install -e '.[wandb]'`).
    enable: bool = False
    # "offline" (files under <stage dir>/wandb/, upload later with `wandb sync`), "online", "disabled".
    mode: str = "offline"
    # W&B project.
    project: str = "kuavo_train"
    # W&B entity: user or team (None = your default entity).
    entity: str | None = None
    # Run name prefix: runs are named `<run_name>-task{id}_{name}` (None = `task{id}_{name}`).
    run_name: str | None = None


@dataclass
class TrainingConfig:
    # Root of all stage outputs; each stage writes `<output_directory>/task{id}_{name}/`.
    output_directory: str = "outputs/train/smolvla_sequential"
    # "auto" (cuda if available), "cuda", "cuda:1", "cpu".
    device: str = "auto"
    # Seed of the run (each stage adds its stage number); same seed + data + config = same run.
    seed: int = 42
    # Samples per forward/backward pass (a micro-batch), summed over all processes (each of P
    # processes gets batch_size / P). An optimizer step sees batch_size x gradient_accumulation_steps.
    batch_size: int = 16
    # Micro-batches (of batch_size) accumulated into one optimizer step, N: loss scaled 1/N; clip,
    # lr schedule and non-finite check once per step. Effective batch = batch_size x N; an epoch
    # keeps its samples and has ceil(its batches / N) optimizer steps.
    gradient_accumulation_steps: int = 1
    # DataLoader workers (0 = load in the main process).
    num_workers: int = 4
    # Save epoch{N}/ every this many epochs.
    save_freq_epoch: int = 5
    # Validate all seen tasks every this many epochs (and always at the end).
    validation_freq_epoch: int = 2
    # Held-out episodes per task, never trained on and never replayed.
    validation_episodes: int = 10
    # Validate every task seen so far (False = only the current task).
    validate_all_previous_tasks: bool = True
    # "bf16" (autocast on CUDA), "no" (fp32). CPU always runs fp32.
    mixed_precision: str = "bf16"
    # Train every stage this many epochs instead of its task file's max_epoch (None = off); demo/smoke runs.
    epochs_override: int | None = None
    # Multiply every stage's lr by this (keeps the per-stage ratios); the tiny demo model trains from scratch at 10x.
    lr_scale: float = 1.0
    # Cap on optimizer steps per epoch (None = full epoch); for smoke runs and the demo.
    max_steps_per_epoch: int | None = None
    # Every epoch is exactly this many optimizer steps, its samples drawn at the stage's replay shares
    # (None = an epoch of current-task frames / the current task's share). Comparisons at the same budget set it.
    steps_per_epoch: int | None = None
    # Cap on validation samples per task (None = every frame of the held-out episodes).
    max_validation_samples: int | None = None
    # Continue an interrupted stage (it does anyway when a resumable state exists).
    resume: bool = True
    # Retrain a stage that is already complete (the old best/ stays until the new one is done).
    overwrite: bool = False
    # Print the plan (stages, mixes, steps, time, disk) and exit.
    dry_run: bool = False
    # Exit non-zero when a success criterion fails.
    strict_criteria: bool = False
    # epoch{N}/ dirs kept besides best/ and last/.
    keep_last_epochs: int = 2
    # Consecutive non-finite losses that stop the stage.
    max_consecutive_nonfinite: int = 5
    # torch.compile the model's training forward (VLM + action expert; the results equal eager's). Meant for GPU
    # stages (not measured on a GPU yet); the first steps wait for the compilation (minutes). Off by default.
    compile: bool = False
    # torch.compile backend: inductor (generated kernels), or aot_eager (no code generation: checks the capture).
    compile_backend: str = "inductor"
    # Weights & Biases logging next to TensorBoard (off by default).
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class SequentialConfig:
    # The one on/off switch for replay of earlier tasks.
    use_replay_buffer: bool = True
    # How earlier tasks are replayed: "ratio" = mixed into the batch stream at stage{N}_replay shares.
    replay_strategy: str = "ratio"
    # Cap on replayed training episodes per earlier task (None = all its training episodes).
    replay_max_episodes_per_task: int | None = None
    # stage{N}_replay: {task{K}: share}. Filled from the YAML's `stage2_replay`, `stage3_replay`, ...
    stage_replay: dict[int, dict[str, float]] = field(default_factory=dict)


@dataclass
class CriteriaConfig:
    # Current task's validation loss must be below this after its stage.
    current_task_max_loss: float = 0.5
    # Earlier tasks' loss limit per stage, keyed by stage number (guide: 0.7 after stage 2, 0.8 after 3, 1.0 after 4).
    previous_task_max_loss: dict[int, float] = field(default_factory=lambda: {2: 0.7, 3: 0.8, 4: 1.0})
    # Forgetting verdict: loss now / loss at the end of its own stage above this = forgetting.
    retained_ratio: float = 1.2


@dataclass
class DataConfig:
    # Ingest cache (v2.1 -> v3.0 conversions), keyed by source path + content fingerprint.
    cache_dir: str = "~/.cache/kuavo_train/datasets"
    # Per-task root overrides by task name (e.g. {weighing: /data/t2}); `task.data.root` wins for the current task.
    roots: dict[str, str] = field(default_factory=dict)
    # Keep Kuavo depth columns (observation.depth_*); dropped by default.
    keep_depth: bool = False
    # mp4 decoder: auto (torchcodec when FFmpeg's libraries load, else pyav), torchcodec or pyav.
    video_backend: str = "auto"
    # Cache of the frozen image embeddings under <cache_dir>/features/ (docs/performance.md): auto (on when exact:
    # the vision encoder is frozen - and fits on disk), on (an error when not exact or no room) or off.
    # Computed once per frame and camera, shared by stages and validation; the loader then decodes no video.
    feature_cache: str = "auto"


@dataclass
class Config:
    # Task file of this stage, relative to the config dir (e.g. tasks/task2_weighing).
    task_file: str
    # Ordered task files of the whole curriculum.
    curriculum: list[str]
    # The current task (the file named by `task`, with `task.*` overrides applied).
    task: TaskConfig
    # Every curriculum task, in order (the current one included).
    tasks: list[TaskConfig]
    policy: PolicyConfig
    training: TrainingConfig
    sequential: SequentialConfig
    criteria: CriteriaConfig
    data: DataConfig
    # Directory the config was loaded from (to resolve task files).
    config_dir: str = ""
    # Name of the YAML file in config_dir and the overrides given (so a command can be printed again).
    config_name: str = ""
    overrides: list[str] = field(default_factory=list)

    @property
    def stage(self) -> int:
        """1-based stage number of the current task."""
        return self.stage_of(self.task.id)

    def stage_of(self, task_id: int) -> int:
        return [t.id for t in self.tasks].index(task_id) + 1

    def task_by_id(self, task_id: int) -> TaskConfig:
        return next(t for t in self.tasks if t.id == task_id)

    @property
    def seen_tasks(self) -> list[TaskConfig]:
        """Tasks trained up to and including the current stage."""
        return self.tasks[: self.stage]

    def replay_mix(self, stage: int | None = None) -> dict[int, float]:
        """Share of samples per task id for a stage (current task only when replay is off)."""
        stage = self.stage if stage is None else stage
        current = self.tasks[stage - 1]
        if stage == 1 or not self.sequential.use_replay_buffer or self.sequential.replay_strategy == "none":
            return {current.id: 1.0}
        ratios = self.sequential.stage_replay[stage]
        return {int(k.removeprefix("task")): float(v) for k, v in ratios.items() if float(v) > 0}
