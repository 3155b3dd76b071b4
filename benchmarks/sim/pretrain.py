"""The sim benchmark's pretrained base: the tiny SmolVLA trained multi-task on the 8 PRETRAIN_TASKS.

The real curriculum starts from lerobot/smolvla_base, a model pretrained on other robot data; this
is the benchmark's stand-in: one joint run (every pretraining task at an equal share,
configs/policy/smolvla_sim_pretrain.yaml) from a random-init tiny backbone, with the real trainer,
saved as its best/ - a normal lerobot SmolVLA checkpoint. It is built once per settings and reused:
its dir is named by a hash of everything that shapes it (tasks, demonstrations, budget, seed, the
backbone), and an interrupted build resumes from its last/.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.sim.demos import DemoSpec, write_task_demos
from benchmarks.sim.tasks import PRETRAIN_TASKS, SimTask
from benchmarks.strategies import equal_budget, run_joint
from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config
from kuavo_train.config.schema import Config
from kuavo_train.demo.tiny_backbone import MANIFEST_NAME
from kuavo_train.layout import RunPaths

PRETRAIN_CONFIG = "smolvla_sim_pretrain"


@dataclass(frozen=True)
class PretrainSpec:
    demo: DemoSpec
    epochs: int
    # Optimizer steps per epoch per task (an epoch of the joint run is 8 x this).
    steps_per_epoch: int
    seed: int = 0

    def key(self, backbone: Path, cfg: Config) -> str:
        """Hash of what the base depends on: these settings, the tasks, the backbone's own spec and the resolved
        training config (policy, training and replay sections: an edit of smolvla_sim_common.yaml builds a new base)."""
        manifest = backbone / MANIFEST_NAME
        training = {k: v for k, v in asdict(cfg.training).items() if k != "output_directory"}
        parts = {
            "spec": asdict(self),
            "tasks": [(t.env_name, t.instruction) for t in PRETRAIN_TASKS],
            "backbone": manifest.read_text() if manifest.is_file() else str(backbone),
            "config": [asdict(cfg.policy), training, asdict(cfg.sequential)],
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]

    @property
    def optimizer_steps(self) -> int:
        return self.epochs * self.steps_per_epoch * len(PRETRAIN_TASKS)


def check_tasks_match(cfg: Config, tasks: tuple[SimTask, ...]) -> None:
    """A training config and the simulator must describe the same tasks with the same instructions."""
    for task_cfg, sim in zip(cfg.tasks, tasks, strict=True):
        if (task_cfg.id, task_cfg.name, task_cfg.language_instruction) != (sim.id, sim.name, sim.instruction):
            raise SystemExit(
                f"error: task {task_cfg.name} of config {cfg.config_name} does not match benchmarks/sim/tasks.py "
                f"({sim.name}: {sim.instruction!r}); keep them in sync"
            )


def demo_dir(out: Path, spec: DemoSpec, prefix: str) -> Path:
    return out / f"{prefix}_{spec.episodes}ep_{spec.image_size}px_{spec.state_dim}d"


def write_demos(tasks: tuple[SimTask, ...], root: Path, spec: DemoSpec) -> dict[str, Path]:
    """Each task's demonstrations under ``root`` (reused when complete); task name -> dataset dir."""
    roots = {}
    for task in tasks:
        started = time.perf_counter()
        roots[task.name] = write_task_demos(task, root / task.dirname, spec)
        print(f"demos: {task.name} -> {roots[task.name]} ({time.perf_counter() - started:.0f}s)")
    return roots


def pretrained_base(out: Path, spec: PretrainSpec, backbone: Path, extra_overrides: list[str]) -> Path:
    """best/ of the pretrained base under ``out`` (built when absent; reused when complete)."""
    roots = write_demos(PRETRAIN_TASKS, demo_dir(out, spec.demo, "pretrain_demos"), spec.demo)
    overrides = [
        *(f"data.roots.{name}={root}" for name, root in roots.items()),
        f"data.cache_dir={out / 'cache'}",
        f"policy.vlm_model_name={backbone}",
        f"training.seed={spec.seed}",
        *equal_budget(spec.epochs, spec.steps_per_epoch),
        *extra_overrides,
    ]
    if spec.demo.episodes < 4:
        overrides.append("training.validation_episodes=1")
    cfg = load_config(DEFAULT_CONFIG_DIR, PRETRAIN_CONFIG, overrides)
    check_tasks_match(cfg, PRETRAIN_TASKS)
    run_dir = out / f"pretrained_base_{spec.key(backbone, cfg)}"
    started = time.perf_counter()
    run_joint(DEFAULT_CONFIG_DIR, PRETRAIN_CONFIG, out, overrides, run_dir)
    best = RunPaths(run_dir).stage(PRETRAIN_TASKS[-1].dirname).best
    print(f"pretrained base: {best} ({spec.optimizer_steps} steps; {time.perf_counter() - started:.0f}s this run)")
    return best
