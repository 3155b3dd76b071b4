"""Closed-loop proof of the curriculum: 4 Meta-World tasks, success matrices per training strategy.

    .venv/bin/python benchmarks/sim/run.py --strategy all --docs     # all four, writes docs/benchmarks.md
    .venv/bin/python benchmarks/sim/run.py --strategy default        # one strategy
    .venv/bin/python benchmarks/sim/run.py --smoke                   # minutes-sized check of the pipeline

For each strategy (benchmarks/strategies.py) it trains the curriculum of
configs/policy/smolvla_sequential_metaworld.yaml with the real trainer, evaluates every stage's
best/ checkpoint in closed loop on every task (success matrix S[stage][task], next to the
validation-loss matrix of the same run) and prints average success, BWT and forgetting
(benchmarks/sim/metrics.py). Expert demonstrations and the tiny backbone are made once under
--out and reused. Needs the `sim` extra (pip install -e '.[sim]') and an OSMesa library
(Debian: apt-get install libosmesa6); rendering is on the CPU.

--full trains the real SmolVLA size (lerobot/smolvla_base, 512x512 inputs, bf16) on a GPU instead
of the tiny backbone, on 224x224 renders and the compact 21-value state (the pretrained model takes
at most 32 state values); it needs the weights in the HF cache or a network. Not yet run by us.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.sim import tasks as sim_tasks  # noqa: E402  (sets MUJOCO_GL before MuJoCo loads)
from benchmarks.sim.closed_loop import evaluate_policy, load_policy, success_rate  # noqa: E402
from benchmarks.sim.demos import DemoSpec, write_task_demos  # noqa: E402
from benchmarks.sim.metrics import backward_transfer, final_average, forgetting  # noqa: E402
from benchmarks.sim.report import format_summary, load_summary, write_docs  # noqa: E402
from benchmarks.strategies import STRATEGIES, equal_budget, optimizer_steps, run_strategy  # noqa: E402
from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config  # noqa: E402
from kuavo_train.config.schema import Config  # noqa: E402
from kuavo_train.demo.assets import build_backbone_for  # noqa: E402
from kuavo_train.device import DeviceChoice, choose_device  # noqa: E402
from kuavo_train.layout import MODEL_FILE, RunPaths  # noqa: E402
from kuavo_train.training.loop import precision_label  # noqa: E402

CONFIG_NAME = "smolvla_sequential_metaworld"
RESULTS_FILE = "sim_results.json"
FULL_OVERRIDES = [
    "policy.pretrained_path=lerobot/smolvla_base",
    "policy.vlm_model_name=HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
    "policy.load_vlm_weights=true",
    "policy.num_vlm_layers=16",
    "policy.freeze_vlm_layers=8",
    "policy.resize_imgs_with_padding=[512,512]",
    "training.device=auto",
    "training.mixed_precision=bf16",
    "training.lr_scale=1.0",
    "training.batch_size=32",
    "training.num_workers=4",
]


@dataclass
class Budget:
    demo: DemoSpec
    epochs: int
    steps_per_epoch: int
    eval_episodes: int
    eval_max_steps: int | None  # None = each task's own limit


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--strategy",
        nargs="+",
        default=["all"],
        choices=[*STRATEGIES, "all"],
        help="one or more strategies, or all (default)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output dir (default outputs/sim, outputs/sim_smoke with --smoke); a strategy's dir "
        "that already exists is refused, demos and backbone are reused",
    )
    parser.add_argument("--episodes", type=int, default=24, help="expert demonstrations per task (2 are held out)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per stage")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    parser.add_argument("--eval-episodes", type=int, default=10, help="closed-loop episodes per (checkpoint, task)")
    parser.add_argument("--smoke", action="store_true", help="tiny everything: checks the pipeline in a minute or two")
    parser.add_argument("--full", action="store_true", help="real SmolVLA size on a GPU instead of the tiny backbone")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="no training: print (and with --docs write) the tables of <out>/sim_results.json again",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        nargs="?",
        const=REPO_ROOT / "docs",
        default=None,
        metavar="DIR",
        help="write DIR/benchmarks.md and its heatmaps (DIR default: docs/)",
    )
    return parser.parse_args(argv)


def budget_of(args: argparse.Namespace) -> Budget:
    demo = DemoSpec(
        episodes=3 if args.smoke else args.episodes, image_size=224 if args.full else 64, compact_state=args.full
    )
    if args.smoke:
        return Budget(demo, epochs=1, steps_per_epoch=2, eval_episodes=1, eval_max_steps=16)
    return Budget(demo, args.epochs, args.steps, args.eval_episodes, eval_max_steps=None)


def config_overrides(out: Path, budget: Budget, full: bool) -> list[str]:
    demo = budget.demo
    data_dir = out / f"demos_{demo.episodes}ep_{demo.image_size}px_{demo.state_dim}d"
    overrides = [f"data.roots.{t.name}={data_dir / t.dirname}" for t in sim_tasks.SIM_TASKS]
    overrides += [f"data.cache_dir={out / 'cache'}", *equal_budget(budget.epochs, budget.steps_per_epoch)]
    if budget.demo.episodes < 4:
        overrides.append("training.validation_episodes=1")
    return [*overrides, *FULL_OVERRIDES] if full else [*overrides, f"policy.vlm_model_name={out / 'tiny_smolvlm'}"]


def refuse_existing_runs(out: Path, names: list[str]) -> None:
    """A finished stage would be skipped and its old model evaluated under the new budget: never mix runs."""
    existing = [str(out / name) for name in names if (out / name).exists()]
    if existing:
        raise SystemExit(
            f"error: {', '.join(existing)} already exist(s) (an earlier run); delete them or choose "
            "another --out (demos and the backbone under --out are reused)"
        )


def check_tasks_match(cfg: Config) -> None:
    """The training config and the simulator must describe the same tasks with the same instructions."""
    for task_cfg, sim in zip(cfg.tasks, sim_tasks.SIM_TASKS, strict=True):
        if (task_cfg.id, task_cfg.name, task_cfg.language_instruction) != (sim.id, sim.name, sim.instruction):
            raise SystemExit(
                f"error: {task_cfg.name} in configs/policy/tasks/metaworld does not match "
                f"benchmarks/sim/tasks.py ({sim.name}: {sim.instruction!r}); keep them in sync"
            )


def build_assets(cfg: Config, budget: Budget, full: bool) -> None:
    if not full:
        build_backbone_for(cfg)
    for task_cfg, sim in zip(cfg.tasks, sim_tasks.SIM_TASKS, strict=True):
        started = time.perf_counter()
        write_task_demos(sim, Path(task_cfg.data.root), budget.demo)
        print(f"demos: {sim.name} -> {task_cfg.data.root} ({time.perf_counter() - started:.0f}s)")


def success_matrix(
    run_dir: Path, strategy: str, budget: Budget, device: str
) -> tuple[dict[int, dict[int, float]], dict]:
    """S[stage][task] for every stage's best/ (only the final model for the joint run)."""
    stages = [len(sim_tasks.SIM_TASKS)] if strategy == "joint" else range(1, len(sim_tasks.SIM_TASKS) + 1)
    final_dir = sim_tasks.SIM_TASKS[-1].dirname
    matrix, episodes = {}, {}
    for stage in stages:
        dirname = final_dir if strategy == "joint" else sim_tasks.SIM_TASKS[stage - 1].dirname
        policy = load_policy(RunPaths(run_dir).stage(dirname).best, device)
        matrix[stage] = {}
        for task in sim_tasks.SIM_TASKS:
            outcomes = evaluate_policy(
                policy,
                task,
                budget.eval_episodes,
                budget.demo.image_size,
                budget.eval_max_steps,
                compact_state=budget.demo.compact_state,
            )
            matrix[stage][task.id] = success_rate(outcomes)
            episodes[f"{stage}/{task.id}"] = [vars(o) for o in outcomes]
            print(
                f"closed loop [{strategy}] stage {stage} model on {task.name}: "
                f"{sum(o.success for o in outcomes)}/{len(outcomes)} solved"
            )
    return matrix, episodes


def evaluate_strategy(name: str, out: Path, overrides: list[str], budget: Budget, device: str) -> dict:
    started = time.perf_counter()
    losses = run_strategy(name, DEFAULT_CONFIG_DIR, CONFIG_NAME, out, overrides)
    trained = time.perf_counter()
    matrix, episodes = success_matrix(out / name, name, budget, device)
    order = [t.id for t in sim_tasks.SIM_TASKS]
    return {
        "strategy": name,
        "success_matrix": matrix,
        "average_success": final_average(matrix),
        "bwt_success": backward_transfer(matrix, order) if name != "joint" else None,
        "forgetting_success": forgetting(matrix, order),
        "loss_matrix": losses["loss_matrix"],
        "loss_metrics": losses["metrics"],
        "episodes": episodes,
        "optimizer_steps": optimizer_steps(out / name),
        "seconds": {"train": trained - started, "closed_loop": time.perf_counter() - trained},
    }


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
        if line.startswith("model name")
    ]
    return models[0] if models else platform.processor() or platform.machine() or "unknown CPU"


def machine_description(choice: DeviceChoice) -> str:
    """This machine's CPU, and the GPU when the benchmark runs on one."""
    text = f"{cpu_name()}, {os.cpu_count()} CPUs"
    if choice.device.type == "cuda":
        import torch

        text += f", GPU {torch.cuda.get_device_name(choice.device)}"
    return text


def model_description(cfg: Config) -> dict:
    """The model the config trains: backbone, where its weights come from, and its size (``parameters`` is filled
    in from a trained checkpoint, see ``checkpoint_parameters``)."""
    policy = cfg.policy
    vlm = policy.vlm_model_name
    return {
        "vlm": Path(vlm).name if Path(vlm).expanduser().is_dir() else vlm,  # a local dir by name, a hub id as is
        "vlm_weights": "pretrained" if policy.load_vlm_weights else "random init",
        "pretrained_policy": policy.pretrained_path,
        "vlm_layers": policy.num_vlm_layers,
        "frozen_vlm_layers": policy.freeze_vlm_layers,
        "image_size": list(policy.resize_imgs_with_padding),
        "parameters": None,
    }


def device_description(cfg: Config, choice: DeviceChoice) -> dict:
    """The device training and the closed loop run on (training.device resolved as every stage resolves it)."""
    return {
        "device": str(choice.device),
        "reason": choice.reason,
        "precision": precision_label(choice.device, cfg.training.mixed_precision),
    }


def checkpoint_parameters(policy_dir: Path) -> int:
    """Number of weights stored in a policy dir (read from the safetensors header; nothing is loaded)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(policy_dir / MODEL_FILE), framework="pt") as weights:
        for key in weights.keys():
            count = 1
            for size in weights.get_slice(key).get_shape():
                count *= size
            total += count
    return total


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = budget_of(args)
    out = (args.out or REPO_ROOT / "outputs" / ("sim_smoke" if args.smoke else "sim")).resolve()
    if args.report_only:
        return report(load_summary(out / RESULTS_FILE), args.docs)
    names = list(STRATEGIES) if "all" in args.strategy else list(dict.fromkeys(args.strategy))
    refuse_existing_runs(out, names)
    overrides = config_overrides(out, budget, args.full)
    cfg = load_config(DEFAULT_CONFIG_DIR, CONFIG_NAME, overrides)
    check_tasks_match(cfg)
    choice = choose_device(cfg.training.device)  # what every stage's training.device resolves to
    started = time.perf_counter()
    build_assets(cfg, budget, args.full)
    demo_seconds = time.perf_counter() - started
    results = {name: evaluate_strategy(name, out, overrides, budget, str(choice.device)) for name in names}
    model = model_description(cfg)
    first = names[0]
    model["parameters"] = checkpoint_parameters(
        RunPaths(out / first).stage(sim_tasks.SIM_TASKS[-1 if first == "joint" else 0].dirname).best
    )
    summary = {
        "command": " ".join(["benchmarks/sim/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_description(choice),
        "model": model,
        "device": device_description(cfg, choice),
        "budget": {
            "episodes": budget.demo.episodes,
            "validation_episodes": cfg.training.validation_episodes,
            "epochs": budget.epochs,
            "steps_per_epoch": budget.steps_per_epoch,
            "batch_size": cfg.training.batch_size,
            "eval_episodes": budget.eval_episodes,
        },
        "seconds": {"demos": demo_seconds, "total": time.perf_counter() - started},
        "strategies": results,
    }
    (out / RESULTS_FILE).write_text(json.dumps(summary, indent=2))
    print(f"\nresults: {out / RESULTS_FILE}")
    return report(summary, args.docs)


def report(summary: dict, docs_dir: Path | None) -> int:
    print()
    print(format_summary(summary))
    if docs_dir is not None:
        print(f"docs: {write_docs(summary, docs_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
