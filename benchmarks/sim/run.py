"""Closed-loop proof of the curriculum (v2): 4 held-out Meta-World tasks learned in sequence from a
pretrained base, per training strategy, over several training seeds, with confidence intervals.

    .venv/bin/python benchmarks/sim/run.py --strategy all --docs      # every strategy, 3 seeds, docs/benchmarks.md
    .venv/bin/python benchmarks/sim/run.py --strategy replay --seeds 0 # one strategy, one seed
    .venv/bin/python benchmarks/sim/run.py --smoke                    # minutes-sized check of the pipeline

1. The pretrained base (benchmarks/sim/pretrain.py): the tiny SmolVLA trained multi-task on 8 other
   Meta-World tasks, built once and reused; its success on the curriculum tasks is measured and
   printed (it should solve none of them).
2. For each strategy (benchmarks/strategies.py) and training seed, the curriculum of
   configs/policy/smolvla_sequential_metaworld.yaml is trained from that base with the real
   trainer, and every stage's best/ is run in closed loop on every task: the success matrix
   S[stage][task] (--eval-episodes per cell; the final model --final-episodes per task), next to
   the validation-loss matrix of the same run, and for the language pair (reach and pick-place:
   one scene, told apart only by the instruction) how often the final model did the other task.
3. Every average, BWT and forgetting figure is reported as the mean over seeds +- a 95%
   confidence interval (benchmarks/sim/metrics.py).

Resumable: each (strategy, seed) writes <out>/<strategy>/seed<k>/sim_cell.json when done; a rerun
skips those, resumes a half-trained run (the trainer's resume) and reuses demos, backbone and base.
The settings are stored in <out>/benchmark_settings.json; another budget in the same --out is
refused. Two processes may run disjoint --seeds or --strategy sets in one --out (2 cores: one each
is about as fast as one process on both). Needs the `sim` extra (pip install -e '.[sim]') and an
OSMesa library (Debian: apt-get install libosmesa6); rendering is on the CPU.

--full trains the real SmolVLA size (lerobot/smolvla_base is then the base, 512x512 inputs, bf16) on
a GPU instead of the tiny backbone, on 224x224 renders and the compact 21-value state (the
pretrained model takes at most 32 state values); it needs the weights in the HF cache or a network.
Not yet run by us.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.sim import tasks as sim_tasks  # noqa: E402  (sets MUJOCO_GL before MuJoCo loads)
from benchmarks.sim.closed_loop import evaluate_policy, load_policy, success_rate  # noqa: E402
from benchmarks.sim.demos import DemoSpec  # noqa: E402
from benchmarks.sim.metrics import backward_transfer, final_average, forgetting  # noqa: E402
from benchmarks.sim.pretrain import PretrainSpec, check_tasks_match, demo_dir, pretrained_base, write_demos  # noqa: E402
from benchmarks.sim.report import format_summary, write_docs  # noqa: E402
from benchmarks.strategies import STRATEGIES, equal_budget, optimizer_steps, run_strategy  # noqa: E402
from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config  # noqa: E402
from kuavo_train.config.schema import Config  # noqa: E402
from kuavo_train.demo.tiny_backbone import build_tiny_backbone  # noqa: E402
from kuavo_train.device import DeviceChoice, choose_device  # noqa: E402
from kuavo_train.files import write_json_atomically  # noqa: E402
from kuavo_train.layout import MODEL_FILE, RunPaths  # noqa: E402
from kuavo_train.training.loop import precision_label  # noqa: E402

CONFIG_NAME = "smolvla_sequential_metaworld"
RESULTS_FILE = "sim_results.json"
CELL_FILE = "sim_cell.json"
SETTINGS_FILE = "benchmark_settings.json"
BASE_ZERO_SHOT_FILE = "zero_shot.json"
FULL_OVERRIDES = [
    "policy.pretrained_path=lerobot/smolvla_base",
    "policy.vlm_model_name=HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
    "policy.load_vlm_weights=true",
    "policy.num_vlm_layers=16",
    "policy.resize_imgs_with_padding=[512,512]",
    "training.device=auto",
    "training.mixed_precision=bf16",
    "training.lr_scale=1.0",
    "training.batch_size=32",
    "training.num_workers=4",
]


@dataclass(frozen=True)
class Budget:
    demo: DemoSpec
    epochs: int
    steps_per_epoch: int
    eval_episodes: int  # per matrix cell (models before the last)
    final_episodes: int  # per task for the final model
    eval_max_steps: int | None  # None = each task's own limit
    num_tasks: int  # curriculum tasks (4; --smoke: 2)
    pretrain: PretrainSpec

    @property
    def tasks(self) -> tuple[sim_tasks.SimTask, ...]:
        return sim_tasks.SIM_TASKS[: self.num_tasks]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--strategy",
        nargs="+",
        default=["all"],
        choices=[*STRATEGIES, "all"],
        help="one or more strategies, or all (default)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output dir (default outputs/sim_v2, outputs/sim_smoke with --smoke)"
    )
    parser.add_argument("--episodes", type=int, default=24, help="expert demonstrations per task (2 are held out)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per stage")
    parser.add_argument("--steps", type=int, default=75, help="optimizer steps per epoch")
    parser.add_argument("--eval-episodes", type=int, default=10, help="closed-loop episodes per matrix cell")
    parser.add_argument("--final-episodes", type=int, default=30, help="closed-loop episodes per task, final model")
    parser.add_argument("--pretrain-episodes", type=int, default=16, help="demonstrations per pretraining task")
    parser.add_argument("--pretrain-epochs", type=int, default=5, help="epochs of the pretraining run")
    parser.add_argument(
        "--pretrain-steps", type=int, default=50, help="pretraining steps per epoch per task (x 8 tasks)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny everything: 2 tasks, 1 seed, a few steps")
    parser.add_argument("--full", action="store_true", help="real SmolVLA size on a GPU instead of the tiny backbone")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="no training: print (and with --docs write) the tables of the finished cells under --out again",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        nargs="?",
        const=REPO_ROOT / "docs",
        default=None,
        metavar="DIR",
        help="write DIR/benchmarks.md and its plots (DIR default: docs/)",
    )
    args = parser.parse_args(argv)
    if args.smoke and "--seeds" not in (argv if argv is not None else sys.argv[1:]):
        args.seeds = [0]
    return args


def budget_of(args: argparse.Namespace) -> Budget:
    size = 224 if args.full else 64
    if args.smoke:
        demo = DemoSpec(episodes=3, image_size=size, compact_state=args.full)
        pretrain = PretrainSpec(DemoSpec(episodes=3, image_size=size, compact_state=args.full), 1, 1)
        return Budget(demo, 1, 2, 1, 2, eval_max_steps=16, num_tasks=2, pretrain=pretrain)
    demo = DemoSpec(episodes=args.episodes, image_size=size, compact_state=args.full)
    pretrain = PretrainSpec(
        DemoSpec(episodes=args.pretrain_episodes, image_size=size, compact_state=args.full),
        args.pretrain_epochs,
        args.pretrain_steps,
    )
    return Budget(
        demo,
        args.epochs,
        args.steps,
        args.eval_episodes,
        args.final_episodes,
        eval_max_steps=None,
        num_tasks=len(sim_tasks.SIM_TASKS),
        pretrain=pretrain,
    )


def check_settings(out: Path, budget: Budget, full: bool) -> None:
    """One budget per --out: a rerun with other settings would mix cells of two budgets in one table."""
    settings = {"budget": asdict(budget), "full": full}
    path = out / SETTINGS_FILE
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != json.loads(json.dumps(settings)):
            raise SystemExit(
                f"error: {out} holds a run with other settings ({path}); use another --out, or the same options"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(path, settings)


def curriculum_overrides(out: Path, budget: Budget) -> list[str]:
    root = demo_dir(out, budget.demo, "demos")
    overrides = [f"data.roots.{t.name}={root / t.dirname}" for t in budget.tasks]
    if budget.num_tasks < len(sim_tasks.SIM_TASKS):
        overrides.append("curriculum=[" + ",".join(f"tasks/metaworld/{t.dirname}" for t in budget.tasks) + "]")
        overrides += [f"~data.roots.{t.name}" for t in sim_tasks.SIM_TASKS[budget.num_tasks :]]
    overrides += [f"data.cache_dir={out / 'cache'}", *equal_budget(budget.epochs, budget.steps_per_epoch)]
    if budget.demo.episodes < 4:
        overrides.append("training.validation_episodes=1")
    return overrides


def build_backbone(out: Path, cfg: Config) -> Path:
    """The tiny backbone; its tokenizer knows the instructions of the curriculum and the pretraining tasks."""
    instructions = [t.instruction for t in (*sim_tasks.SIM_TASKS, *sim_tasks.PRETRAIN_TASKS)]
    return build_tiny_backbone(
        out / "tiny_smolvlm",
        instructions=instructions,
        image_size=cfg.policy.resize_imgs_with_padding[0],
        num_text_layers=cfg.policy.num_vlm_layers,
    )


def prepare(out: Path, budget: Budget, full: bool) -> tuple[list[str], dict]:
    """Demonstrations, backbone and pretrained base; the overrides every strategy trains with, and the base's
    description (where it is, what it cost, its success on the curriculum tasks)."""
    overrides = curriculum_overrides(out, budget)
    cfg = load_config(DEFAULT_CONFIG_DIR, CONFIG_NAME, [*overrides, *(FULL_OVERRIDES if full else [])])
    check_tasks_match(cfg, budget.tasks)
    started = time.perf_counter()
    write_demos(budget.tasks, demo_dir(out, budget.demo, "demos"), budget.demo)
    if full:
        return [*overrides, *FULL_OVERRIDES], {"checkpoint": "lerobot/smolvla_base", "zero_shot": None}
    backbone = build_backbone(out, cfg)
    overrides.append(f"policy.vlm_model_name={backbone}")
    base = pretrained_base(out, budget.pretrain, backbone, [])
    overrides.append(f"policy.pretrained_path={base}")
    description = {
        "checkpoint": str(base),
        "tasks": [t.env_name for t in sim_tasks.PRETRAIN_TASKS],
        "optimizer_steps": budget.pretrain.optimizer_steps,
        "episodes_per_task": budget.pretrain.demo.episodes,
        "zero_shot": base_zero_shot(base, budget),
        "seconds_this_run": time.perf_counter() - started,
    }
    return overrides, description


def with_untrained_instructions(policy, tasks: tuple[sim_tasks.SimTask, ...]):
    """The wrapper refuses instructions its model was not trained on (a deployment safeguard); the base is scored
    on the curriculum's new instructions on purpose, so they are entered with the base's features (every sim task
    has the same camera, state and action sizes) and reach the model verbatim."""
    features = policy.schema.tasks[0]
    for task in tasks:
        policy._resolved[task.instruction] = replace(
            features, task_id=1000 + task.id, name=task.name, instruction=task.instruction
        )
    return policy


def base_zero_shot(base: Path, budget: Budget) -> dict[int, float]:
    """The base's success on each curriculum task (measured once per base; it should be near 0)."""
    path = base.parent.parent / BASE_ZERO_SHOT_FILE
    stored = json.loads(path.read_text()) if path.is_file() else {}
    key = str(budget.eval_episodes)
    if key not in stored:
        policy = with_untrained_instructions(load_policy(base, "cpu"), budget.tasks)
        stored[key] = {
            str(task.id): success_rate(
                evaluate_policy(policy, task, budget.eval_episodes, budget.demo.image_size, budget.eval_max_steps)
            )
            for task in budget.tasks
        }
        write_json_atomically(path, stored)
    result = {int(task): value for task, value in stored[key].items()}
    print(
        "pretrained base on the curriculum tasks: "
        + ", ".join(f"{t.name} {100 * result[t.id]:.0f}%" for t in budget.tasks if t.id in result)
    )
    return result


def evaluate_cell(run_dir: Path, strategy: str, seed: int, budget: Budget, device: str) -> tuple[dict, dict]:
    """S[stage][task] for every stage's best/ (only the final model for the joint run), and every episode.
    The final model gets ``final_episodes`` per task, the others ``eval_episodes``; seed k scores on
    evaluation episodes of its own."""
    tasks = budget.tasks
    last = len(tasks)
    stages = [last] if strategy == "joint" else range(1, last + 1)
    matrix, episodes = {}, {}
    for stage in stages:
        dirname = tasks[-1].dirname if strategy == "joint" else tasks[stage - 1].dirname
        policy = load_policy(RunPaths(run_dir).stage(dirname).best, device)
        count = budget.final_episodes if stage == last else budget.eval_episodes
        matrix[stage] = {}
        for task in tasks:
            outcomes = evaluate_policy(
                policy,
                task,
                count,
                budget.demo.image_size,
                budget.eval_max_steps,
                seed=seed,
                compact_state=budget.demo.compact_state,
            )
            matrix[stage][task.id] = success_rate(outcomes)
            episodes[f"{stage}/{task.id}"] = [vars(o) for o in outcomes]
            print(
                f"closed loop [{strategy} seed {seed}] stage {stage} model on {task.name}: "
                f"{sum(o.success for o in outcomes)}/{len(outcomes)} solved"
            )
    return matrix, episodes


def language_switching(episodes: dict, last: int, tasks: tuple[sim_tasks.SimTask, ...]) -> dict[str, dict]:
    """For the final model and each instruction of the language pair: success of the instructed task and the rate
    of doing the other task's behaviour instead, on the shared scene."""
    result = {}
    for task in tasks:
        if task.name not in sim_tasks.LANGUAGE_PAIR:
            continue
        outcomes = episodes[f"{last}/{task.id}"]
        result[task.name] = {
            "success": sum(o["success"] for o in outcomes) / len(outcomes),
            "other_behaviour": sum(bool(o["other_behaviour"]) for o in outcomes) / len(outcomes),
            "episodes": len(outcomes),
        }
    return result


@contextmanager
def exclusive(path: Path):
    """Hold an exclusive lock on ``path`` (created): a second process on the same --out waits here instead of
    writing the same demos, base or cell at the same time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_cell(name: str, seed: int, out: Path, overrides: list[str], budget: Budget, device: str) -> dict:
    """Train and score one (strategy, seed); reuses its sim_cell.json when it already finished."""
    run_dir = out / name / f"seed{seed}"
    with exclusive(out / name / f".seed{seed}.lock"):
        return _run_cell(name, seed, run_dir, out, overrides, budget, device)


def _run_cell(name: str, seed: int, run_dir: Path, out: Path, overrides: list[str], budget: Budget, device: str):
    cell_path = run_dir / CELL_FILE
    if cell_path.is_file():
        print(f"[{name} seed {seed}] finished earlier: {cell_path}")
        return json.loads(cell_path.read_text())
    started = time.perf_counter()
    losses = run_strategy(name, DEFAULT_CONFIG_DIR, CONFIG_NAME, out, [*overrides, f"training.seed={seed}"], run_dir)
    trained = time.perf_counter()
    matrix, episodes = evaluate_cell(run_dir, name, seed, budget, device)
    order = [t.id for t in budget.tasks]
    cell = {
        "strategy": name,
        "seed": seed,
        "success_matrix": matrix,
        "average_success": final_average(matrix),
        "bwt_success": backward_transfer(matrix, order) if name != "joint" else None,
        "forgetting_success": forgetting(matrix, order),
        "language": language_switching(episodes, len(order), budget.tasks),
        "loss_matrix": losses["loss_matrix"],
        "loss_metrics": losses["metrics"],
        "episodes": episodes,
        "optimizer_steps": optimizer_steps(run_dir),
        "seconds": {"train": trained - started, "closed_loop": time.perf_counter() - trained},
    }
    write_json_atomically(cell_path, cell)
    return json.loads(cell_path.read_text())  # as a rerun will read it (string keys)


def collect_cells(out: Path) -> dict[str, dict[str, dict]]:
    """Every finished (strategy, seed) under ``out``, in the strategies' order."""
    cells: dict[str, dict[str, dict]] = {}
    for name in STRATEGIES:
        for path in sorted((out / name).glob(f"seed*/{CELL_FILE}")):
            cell = json.loads(path.read_text())
            cells.setdefault(name, {})[str(cell["seed"])] = cell
    return cells


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
    out = (args.out or REPO_ROOT / "outputs" / ("sim_smoke" if args.smoke else "sim_v2")).resolve()
    if args.report_only:
        if not (out / RESULTS_FILE).is_file():
            raise SystemExit(f"error: {out / RESULTS_FILE} not found: no cell has finished under {out} yet")
        summary = json.loads((out / RESULTS_FILE).read_text())
        return report({**summary, "strategies": collect_cells(out)}, args.docs)
    names = list(STRATEGIES) if "all" in args.strategy else list(dict.fromkeys(args.strategy))
    check_settings(out, budget, args.full)
    started = time.perf_counter()
    with exclusive(out / ".prepare.lock"):
        overrides, base = prepare(out, budget, args.full)
    cfg = load_config(DEFAULT_CONFIG_DIR, CONFIG_NAME, overrides)
    choice = choose_device(cfg.training.device)  # what every stage's training.device resolves to
    header = {
        "command": " ".join(["benchmarks/sim/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_description(choice),
        "model": model_description(cfg),
        "device": device_description(cfg, choice),
        "budget": budget_description(cfg, budget),
        "base": base,
    }
    for name in names:
        for seed in args.seeds:
            run_cell(name, seed, out, overrides, budget, str(choice.device))
            summary = write_summary(out, header, RunPaths(out / name / f"seed{seed}"), budget, started)
    print(f"\nresults: {out / RESULTS_FILE}")
    return report(summary, args.docs)


def budget_description(cfg: Config, budget: Budget) -> dict:
    return {
        "tasks": [t.name for t in budget.tasks],
        "episodes": budget.demo.episodes,
        "validation_episodes": cfg.training.validation_episodes,
        "epochs": budget.epochs,
        "steps_per_epoch": budget.steps_per_epoch,
        "batch_size": cfg.training.batch_size,
        "eval_episodes": budget.eval_episodes,
        "final_episodes": budget.final_episodes,
    }


def write_summary(out: Path, header: dict, run: RunPaths, budget: Budget, started: float) -> dict:
    """sim_results.json after every cell, with every cell finished so far (--report-only reads it mid-run)."""
    model = {**header["model"], "parameters": checkpoint_parameters(run.stage(budget.tasks[-1].dirname).best)}
    summary = {
        **header,
        "model": model,
        "seconds": {"this_run": time.perf_counter() - started},
        "strategies": collect_cells(out),
    }
    write_json_atomically(out / RESULTS_FILE, summary)
    return summary


def report(summary: dict, docs_dir: Path | None) -> int:
    print()
    print(format_summary(summary))
    if docs_dir is not None:
        print(f"docs: {write_docs(summary, docs_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
