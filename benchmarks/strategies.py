"""The training strategies the benchmarks compare, run through the real trainer.

  naive          sequential fine-tuning: no replay, the stage-1 lr in every stage, no VLM layer freezing
  replay         + replay at the configured shares (lr and freezing as naive)
  seed_guide     the original guide's recipe exactly: replay + its lower lr per stage (each task file's
                 seed_guide/ overlay, e.g. configs/policy/tasks/seed_guide/) + the lower half of the VLM
                 layers frozen
  replay_freeze  the guide's replay and freezing at the stage-1 lr in every stage (the variation the first
                 benchmark suggested: there the lower lr of later stages under-fitted them)

  lora_merge     LoRA stages (policy.peft.mode=merge): a fresh adapter per stage on the replay mix, merged
                 into the weights at the stage's end; lr 10x the full-weight lr
  lora_per_task  LoRA stages (policy.peft.mode=per_task): one adapter per task on its own data (no replay),
                 earlier adapters untouched, the instruction picks the adapter; lr 10x the full-weight lr

Every strategy states all its levers itself, so its meaning does not move with the shipped defaults.
  joint          all tasks mixed in equal shares, trained at once from the same start as stage 1
                 (policy.pretrained_path, or scratch): the multi-task upper bound; same epochs of
                 (stages x training.steps_per_epoch) steps.

Same budget (SPEC §5): `equal_budget` fixes every epoch to the same number of optimizer steps
(`training.steps_per_epoch`), so every sequential strategy runs the same steps per stage and the
joint run the sum of them; `optimizer_steps` reports what each really ran.

Used by benchmarks/forgetting_ablation.py (synthetic Kuavo data) and benchmarks/sim/run.py (Meta-World).
"""

from __future__ import annotations

import json
from pathlib import Path

from kuavo_train.config.load import load_config
from kuavo_train.curriculum.paths import is_stage_complete, stage_paths
from kuavo_train.curriculum.run_all import run_all
from kuavo_train.curriculum.stage import StageRunner
from kuavo_train.data.prepare import prepare_curriculum_data
from kuavo_train.files import recover_interrupted_writes
from kuavo_train.layout import CURRICULUM_RESULTS_FILE, STAGE_RESULTS_FILE

SEQUENTIAL = ("naive", "replay", "seed_guide", "replay_freeze", "lora_merge", "lora_per_task")
STRATEGIES = (*SEQUENTIAL, "joint")
STAGE1_LR = "task.training.lr=1e-4"  # the stage-1 lr of every config, then kept for every stage
# LoRA's usual step: 10x the full-weight lr (adapters start at zero and hold few parameters); not tuned here.
LORA_LR = "task.training.lr=1e-3"
FULL_WEIGHTS = "policy.peft.mode=off"
GUIDE_DIR = "seed_guide"  # beside each task file: the guide's overlay of it (its own lr)


def strategy_overrides(name: str, config_dir: Path, config_name: str, overrides: list[str]) -> list[str]:
    """The overrides that make ``name`` of the config (replay on/off, lr per stage, frozen VLM layers)."""
    cfg = load_config(config_dir, config_name, overrides)
    half = f"policy.freeze_vlm_layers={cfg.policy.num_vlm_layers // 2}"  # the guide: 8 of 16
    replay = "sequential.use_replay_buffer=true"
    no_replay, all_layers = "sequential.use_replay_buffer=false", "policy.freeze_vlm_layers=0"
    return {
        "naive": [no_replay, STAGE1_LR, all_layers, FULL_WEIGHTS],
        "replay": [replay, STAGE1_LR, all_layers, FULL_WEIGHTS],
        "seed_guide": [replay, guide_curriculum(config_dir, cfg.curriculum), half, FULL_WEIGHTS],
        "replay_freeze": [replay, STAGE1_LR, half, FULL_WEIGHTS],
        "lora_merge": [replay, LORA_LR, all_layers, "policy.peft.mode=merge"],
        "lora_per_task": [no_replay, LORA_LR, all_layers, "policy.peft.mode=per_task"],
    }[name]


def guide_curriculum(config_dir: Path, curriculum: list[str]) -> str:
    """``curriculum=[...]`` with each task file replaced by its seed_guide/ overlay where there is one."""
    files = []
    for task_file in curriculum:
        path = Path(task_file)
        overlay = path.parent / GUIDE_DIR / path.name
        files.append(str(overlay) if (config_dir / f"{overlay}.yaml").is_file() else task_file)
    return "curriculum=[" + ",".join(files) + "]"


def equal_budget(epochs: int, steps_per_epoch: int) -> list[str]:
    """Overrides giving every stage of every strategy ``epochs`` x ``steps_per_epoch`` optimizer steps
    (a config's ``max_steps_per_epoch`` cap is lifted: it would cut the joint run's longer epochs)."""
    return [
        f"training.epochs_override={epochs}",
        f"training.steps_per_epoch={steps_per_epoch}",
        "training.max_steps_per_epoch=null",
    ]


def run_strategy(
    name: str, config_dir: Path, config_name: str, out: Path, overrides: list[str], run_dir: Path | None = None
) -> dict:
    """Train ``name`` into ``run_dir`` (default out/name) and return its curriculum_results.json. Finished stages
    are skipped and an interrupted one resumes (the trainer's own resume)."""
    run_dir = run_dir or out / name
    if name == "joint":
        return run_joint(config_dir, config_name, out, overrides, run_dir)
    chosen = strategy_overrides(name, config_dir, config_name, overrides)
    code = run_all(config_dir, config_name, [*overrides, *chosen, f"training.output_directory={run_dir}"])
    if code == 130:
        raise KeyboardInterrupt(f"{name}: training interrupted; its partial outputs are in {run_dir}")
    return json.loads((run_dir / CURRICULUM_RESULTS_FILE).read_text())


def run_joint(config_dir: Path, config_name: str, out: Path, overrides: list[str], run_dir: Path | None = None) -> dict:
    """One run of the last stage on an equal mix of every task, from stage 1's start (policy.pretrained_path or
    scratch), with every stage's steps; into ``run_dir`` (default out/joint). A finished run is reused, an
    interrupted one resumes from its last/."""
    run_dir = run_dir or out / "joint"
    cfg = joint_config(config_dir, config_name, run_dir, overrides)
    paths = stage_paths(cfg)
    if not is_stage_complete(paths):
        recover_interrupted_writes(paths.stage_dir)  # as run_stage does: a checkpoint swap cut short
        data = prepare_curriculum_data(cfg, paths.run_root)
        result = StageRunner(cfg, paths, data, init_path=cfg.policy.pretrained_path).run()
        if result.status == "interrupted":
            raise KeyboardInterrupt(f"joint: training interrupted; it resumes from {paths.last} on a rerun")
    return json.loads((run_dir / CURRICULUM_RESULTS_FILE).read_text())


def joint_config(config_dir: Path, config_name: str, run_dir: Path, overrides: list[str]):
    """The joint run's config: the last stage, every task at an equal share, stages x steps per epoch."""
    base = load_config(config_dir, config_name, overrides)
    last_task = f"task={base.curriculum[-1]}"
    last = load_config(config_dir, config_name, [*overrides, last_task])
    steps = last.training.steps_per_epoch
    if steps is None:
        raise ValueError("the joint strategy needs training.steps_per_epoch (its budget is the stages' summed steps)")
    share = 1.0 / len(last.tasks)
    mix = "{" + ", ".join(f"{t.key}: {share}" for t in last.tasks) + "}"
    return load_config(
        config_dir,
        config_name,
        [
            *overrides,
            last_task,
            f"training.output_directory={run_dir}",
            f"sequential.stage{last.stage}_replay={mix}",
            "sequential.use_replay_buffer=true",
            f"training.steps_per_epoch={steps * len(last.tasks)}",
            "task.training.lr=1e-4",  # the stage-1 lr: training starts where stage 1 does
            "policy.freeze_vlm_layers=0",  # the upper bound trains every layer, as naive and replay do
            FULL_WEIGHTS,
        ],
    )


def optimizer_steps(run_dir: Path) -> int:
    """Optimizer steps a strategy really ran, summed over its stages' training_results.json."""
    return sum(json.loads(p.read_text())["optimizer_steps"] for p in run_dir.glob(f"*/{STAGE_RESULTS_FILE}"))


def final_losses(loss_matrix: dict[str, dict[str, float]]) -> tuple[dict[str, float], float]:
    """The last model's row of a curriculum loss matrix and its average."""
    row = loss_matrix[max(loss_matrix, key=int)]
    return row, sum(row.values()) / len(row)


def final_row(results: dict) -> tuple[dict[str, float], float, float | None]:
    """The last model's loss per task, their average and the BWT of the last stage."""
    row, average = final_losses(results["loss_matrix"])
    return row, average, results["metrics"]["bwt"].get(max(results["loss_matrix"], key=int))
