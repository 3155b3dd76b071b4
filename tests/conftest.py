"""Session fixtures: the tiny backbone and a small synthetic Kuavo curriculum, built once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config  # noqa: E402
from kuavo_train.demo.assets import DemoDataSize, ensure_demo_assets  # noqa: E402
from kuavo_train.layout import RunPaths, StagePaths  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = "smolvla_sequential_demo"
TASK_FILES = ["tasks/task1_moving_grasp", "tasks/task2_weighing", "tasks/task3_placement", "tasks/task4_sorting"]
SMALL_DATA = DemoDataSize(num_episodes=6, min_len=20, max_len=30, image_hw=(24, 32))


def skip_unless_required(missing: str | None) -> None:
    """Skip when an optional system dependency is ``missing`` (a reason); fail instead in CI
    (KUAVO_REQUIRE_SYSTEM_DEPS=1, after scripts/install_system_deps.sh)."""
    if missing is None:
        return
    if os.environ.get("KUAVO_REQUIRE_SYSTEM_DEPS") == "1":
        pytest.fail(f"KUAVO_REQUIRE_SYSTEM_DEPS=1 but {missing}")
    pytest.skip(missing)


@dataclass
class DemoEnv:
    root: Path
    overrides: list[str]

    def config(self, task_file: str = TASK_FILES[0], extra: list[str] = (), output: Path | None = None):
        overrides = [*self.overrides, f"task={task_file}", *extra]
        if output is not None:
            overrides.append(f"training.output_directory={output}")
        return load_config(DEFAULT_CONFIG_DIR, DEMO_CONFIG, overrides)

    def cli_args(self, task_file: str, output: Path, extra: list[str] = ()) -> list[str]:
        return [
            "--config-path=../configs/policy",
            f"--config-name={DEMO_CONFIG}",
            f"task={task_file}",
            *self.overrides,
            f"training.output_directory={output}",
            *extra,
        ]


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory) -> DemoEnv:
    root = tmp_path_factory.mktemp("demo_env")
    names = ["moving_grasp", "weighing", "placement", "sorting"]
    overrides = [f"data.roots.{name}={root / f'task{i}_{name}'}" for i, name in enumerate(names, start=1)]
    overrides += [
        f"policy.vlm_model_name={root / 'tiny_smolvlm'}",
        f"data.cache_dir={root / 'cache'}",
        f"training.output_directory={root / 'outputs'}",
        "training.epochs_override=2",
        "training.validation_episodes=2",
        "training.max_validation_samples=16",
    ]
    env = DemoEnv(root=root, overrides=overrides)
    ensure_demo_assets(env.config(), size=SMALL_DATA)
    return env


SCRIPT = REPO_ROOT / "kuavo_train" / "train_smolvla_sequential.py"
# The reference stage-1 run: 3 epochs, a checkpoint every epoch, 2 epoch dirs kept.
SEED_RUN_EXTRA = ["training.epochs_override=3", "training.save_freq_epoch=1", "training.keep_last_epochs=2"]


def seed_command(demo_env: DemoEnv, output: Path, task_file: str = TASK_FILES[0], extra=()) -> list[str]:
    return [sys.executable, str(SCRIPT), *demo_env.cli_args(task_file, output, extra)]


def run_seed_command(
    demo_env: DemoEnv, output: Path, task_file: str = TASK_FILES[0], extra=(), env: dict | None = None
) -> subprocess.CompletedProcess:
    """The seed command in a subprocess (``env``: its environment; None = this process's)."""
    return subprocess.run(
        seed_command(demo_env, output, task_file, extra),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def seed_stage1(demo_env, tmp_path_factory):
    """Stage 1 trained once by the seed command; (output dir, completed process)."""
    output = tmp_path_factory.mktemp("seed") / "run"
    result = run_seed_command(demo_env, output, extra=SEED_RUN_EXTRA)
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


# The cheapest real stage: one epoch of 2 optimizer steps on batches of 2, 2 validation frames per task.
FAST_STAGE = [
    "training.epochs_override=1",
    "training.max_steps_per_epoch=2",
    "training.max_validation_samples=2",
    "training.batch_size=2",
]


@dataclass
class FourStageRun:
    """The whole demo curriculum trained in-process (``FAST_STAGE`` settings) into ``root``.

    ``initial_weights[stage]``: every tensor of the policy right after it was loaded at the start of that stage
    (before its first step), ``start_paths[stage]``: what it was loaded from (None: fresh). Read-only: a test that
    writes into the run dir works on ``copy_run(run.root, tmp_path)``.
    """

    root: Path
    initial_weights: dict[int, dict] = field(default_factory=dict)  # stage -> {name: tensor}
    start_paths: dict[int, object] = field(default_factory=dict)  # stage -> init path or None
    seconds: float = 0.0
    stage_seconds: dict[int, float] = field(default_factory=dict)  # stage -> wall time of its run_stage call

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.root)

    def stage(self, number: int) -> StagePaths:
        return self.paths.stage(Path(TASK_FILES[number - 1]).name)


def train_stages(demo_env: DemoEnv, output: Path, task_files=TASK_FILES, extra=FAST_STAGE) -> FourStageRun:
    """Train ``task_files`` in order into ``output`` as the train command would, recording each stage's start."""
    import torch

    from kuavo_train.curriculum import build as build_module
    from kuavo_train.curriculum import stage as stage_module

    run = FourStageRun(root=output)
    current = {}
    real_load_policy = build_module.load_policy

    def recording_load_policy(policy_cfg, schema, init_path, device):
        policy = real_load_policy(policy_cfg, schema, init_path, device)
        number = current["stage"]
        assert number not in run.initial_weights, f"stage {number} loaded its policy twice"
        with torch.no_grad():
            run.initial_weights[number] = {k: v.detach().to("cpu", copy=True) for k, v in policy.state_dict().items()}
        run.start_paths[number] = init_path
        return policy

    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build_module, "load_policy", recording_load_policy)
        for number, task_file in enumerate(task_files, start=1):
            current["stage"] = number
            cfg = demo_env.config(task_file, extra, output=output)
            stage_started = time.perf_counter()
            result = stage_module.run_stage(cfg)
            run.stage_seconds[number] = time.perf_counter() - stage_started
            assert result.status == "complete", f"{task_file}: {result.status}"
    run.seconds = time.perf_counter() - started
    return run


@pytest.fixture(scope="session")
def four_stage_run(demo_env, tmp_path_factory) -> FourStageRun:
    """All four stages of the demo curriculum, trained for real once per session (task 4 with its 20-dim action)."""
    return train_stages(demo_env, tmp_path_factory.mktemp("four_stages") / "run")


def copy_run(run_root: Path, dest: Path) -> Path:
    """A private copy of a run dir (``dest``/run) for a test that writes into it or damages it."""
    return Path(shutil.copytree(run_root, dest / "run", symlinks=True))
