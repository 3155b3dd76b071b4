"""The command line as a new user meets it: --help everywhere, keys, data roots, refusals, evaluate by path."""

import json
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
import torch
import yaml

from kuavo_train.cli import COMMANDS, main
from kuavo_train.config.keys import config_keys
from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config
from kuavo_train.config.schema import Config
from kuavo_train.evaluation.instruction_following import evaluate_main
from tests.conftest import REPO_ROOT, SCRIPT

BASE = "smolvla_sequential_base"


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help(command, flag, capsys):
    try:
        code = main([command, flag])
    except SystemExit as exited:  # argparse-based commands
        code = exited.code
    out = capsys.readouterr().out
    assert code == 0 and "usage:" in out and command in out
    assert len(out.splitlines()) >= 4  # purpose and options, not a bare usage line


def test_seed_script_and_top_level_help():
    seed = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert seed.returncode == 0 and "usage:" in seed.stdout and "data.roots.<task name>=PATH" in seed.stdout, (
        seed.stderr
    )
    top = subprocess.run(
        [sys.executable, "-m", "kuavo_train", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert top.returncode == 0 and "commands:" in top.stdout and all(name in top.stdout for name in COMMANDS)


def test_hydra_style_help_points_to_the_key_list(capsys):
    for command in ("train", "run-all", "plan"):
        main([command, "--help"])
        out = capsys.readouterr().out
        assert "data.roots.<task name>=PATH" in out and "kuavo-train keys" in out


def test_keys_lists_every_schema_field_with_a_meaning(capsys):
    cfg = load_config()
    docs = {d.key: d for d in config_keys(cfg)}
    expected = set()
    for section in ("policy", "training", "criteria", "data", "task"):
        expected |= _leaf_keys(getattr(cfg, section), section)
    expected -= {"data.roots"}
    expected |= {"data.roots.<task name>", "sequential.stage<N>_replay", "sequential.use_replay_buffer"}
    assert expected <= set(docs), sorted(expected - set(docs))
    assert [k for k, d in docs.items() if not d.meaning] == []
    assert main(["keys", "training.batch"]) == 0
    out = capsys.readouterr().out
    assert "training.batch_size (int) = 16" in out and "policy." not in out
    assert main(["keys", "nosuchkey"]) == 2
    assert main(["keys", "--config-name", "smolvla_sequential_demo", "policy.chunk"]) == 0  # the space form
    assert "policy.chunk_size (int) = 10" in capsys.readouterr().out


def _leaf_keys(obj, prefix: str) -> set[str]:
    keys = set()
    for f in fields(obj):
        value = getattr(obj, f.name)
        keys |= _leaf_keys(value, f"{prefix}.{f.name}") if is_dataclass(value) else {f"{prefix}.{f.name}"}
    return keys


def test_config_object_fields_are_all_covered():
    assert {f.name for f in fields(Config)} >= {"policy", "training", "sequential", "criteria", "data", "task"}


def test_data_roots_override_on_the_base_config_plans(demo_env, tmp_path, capsys):
    """`data.roots.<name>=PATH` works on the base config, whose YAML lists no roots."""
    roots = [o for o in demo_env.overrides if o.startswith("data.roots.")]
    assert yaml.safe_load((DEFAULT_CONFIG_DIR / f"{BASE}.yaml").read_text())["data"]["roots"] == {}
    cache = next(o for o in demo_env.overrides if o.startswith("data.cache_dir="))
    code = main(
        ["plan", *roots, cache, f"training.output_directory={tmp_path / 'run'}", "training.validation_episodes=2"]
    )
    out = capsys.readouterr().out
    assert code == 0
    for stage, name in enumerate(["task1_moving_grasp", "task2_weighing", "task3_placement", "task4_sorting"], start=1):
        assert f"Plan of stage {stage} ({name})" in out
    cfg = load_config(DEFAULT_CONFIG_DIR, BASE, [*roots, "+data.roots.weighing=/elsewhere"])
    assert cfg.tasks[1].data.root == "/elsewhere"  # the old `+` form still works


def test_malformed_root_override_is_one_line():
    with pytest.raises(Exception, match="data.roots.<task name>=/path"):
        load_config(DEFAULT_CONFIG_DIR, BASE, ["data.roots.=/x"])


def test_run_all_refuses_task_data_root_before_training(tmp_path, capsys):
    code = main(["run-all", "task.data.root=/data/t1", f"training.output_directory={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and "data.roots.<task name>=PATH" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
    assert main(["run-all", "task.data.episodes_to_use=[0,1]"]) == 2
    assert main(["run-all", "task=tasks/task2_weighing"]) == 2


def test_cuda_device_fails_fast_with_the_reason(monkeypatch):
    from kuavo_train import device
    from kuavo_train.errors import KuavoError

    monkeypatch.setattr(
        device, "cuda_problem", lambda: "The NVIDIA driver on your system is too old (found version 11040)"
    )
    with pytest.raises(KuavoError, match="too old.*training.device=cpu"):
        device.choose_device("cuda")
    choice = device.choose_device("auto")
    assert choice.device.type == "cpu" and "too old" in choice.reason


def test_evaluate_a_checkpoint_with_no_overrides(seed_stage1, tmp_path, capsys, monkeypatch):
    """The run dir records its config, overrides and data roots: a path is enough, from any directory.

    Each form loads the checkpoint and rebuilds the held-out frames from the recorded config; the matrix
    (seconds of inference, the same for the same inputs) is computed once, and the other forms must
    hand it the same checkpoint, seed and frames, which then get the same result."""
    from kuavo_train.evaluation import instruction_following

    output, _ = seed_stage1
    best = output / "task1_moving_grasp" / "best"
    real, computed = instruction_following.evaluate_instruction_matrix, []

    def evaluate_once(wrapper, frames, seed=0):
        inputs = (Path(wrapper.checkpoint_dir).resolve(), seed)
        if not computed:
            computed.append((inputs, frames, real(wrapper, frames, seed=seed)))
        first_inputs, first_frames, result = computed[0]
        assert inputs == first_inputs and inputs[0] == best.resolve()
        _assert_same_frames(frames, first_frames)
        return result

    monkeypatch.setattr(instruction_following, "evaluate_instruction_matrix", evaluate_once)
    monkeypatch.chdir(tmp_path)
    for given in (best, output / "task1_moving_grasp", output):  # checkpoint, stage, run
        (output / "instruction_matrix.json").unlink(missing_ok=True)
        assert evaluate_main([str(given), "--tasks", "1", "--max-frames", "4", "--device", "cpu"]) == 0
        assert f"evaluating {best}" in capsys.readouterr().out
        written = json.loads((output / "instruction_matrix.json").read_text())
        assert written["tasks"] == [1] and written["checkpoint"] == str(best.resolve())
    assert len(computed) == 1


def _assert_same_frames(frames: dict, expected: dict) -> None:
    """The held-out frames another path form rebuilt are those of the first form, value for value."""
    assert sorted(frames) == sorted(expected)
    for task_id, samples in frames.items():
        count = len(expected[task_id])
        assert len(samples) == count > 0, f"task {task_id}: {len(samples)} frames, not {count}"
        for n, (sample, other) in enumerate(zip(samples, expected[task_id], strict=True)):
            assert sample.keys() == other.keys(), f"task {task_id} frame {n}"
            for key, value in sample.items():
                same = torch.equal(value, other[key]) if isinstance(value, torch.Tensor) else value == other[key]
                assert same, f"task {task_id} frame {n}: {key} differs"


def test_evaluate_outside_a_run_names_the_problem(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not inside a kuavo_train run" in capsys.readouterr().err


def test_five_task_curriculum_plans_in_dry_run(demo_env, tmp_path, capsys):
    """README "Your own tasks": a 5th task file + the README's own curriculum YAML, no code."""
    config_dir = tmp_path / "policy"
    shutil.copytree(DEFAULT_CONFIG_DIR, config_dir)
    task = yaml.safe_load((config_dir / "tasks" / "task2_weighing.yaml").read_text())
    task |= {
        "id": 5,
        "name": "weighing_left",
        "stage": 5,
        "language_instruction": "Weigh the parcel with the left hand",
    }
    (config_dir / "tasks" / "task5_weighing_left.yaml").write_text("# @package _global_\n" + yaml.safe_dump(task))
    readme_yaml = re.search(r"```yaml\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S).group(1)
    (config_dir / "my_curriculum.yaml").write_text(textwrap.dedent(readme_yaml).replace("<name>", "weighing_left"))
    roots = [o for o in demo_env.overrides if o.startswith(("data.roots.", "data.cache_dir="))]
    weighing = next(o for o in roots if o.startswith("data.roots.weighing=")).split("=", 1)[1]
    code = main(
        [
            "plan",
            f"--config-path={config_dir}",
            "--config-name=my_curriculum",
            *roots,
            f"data.roots.weighing_left={weighing}",
            f"training.output_directory={tmp_path / 'run'}",
            "training.validation_episodes=2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "Plan of stage 5 (task5_weighing_left)" in out
    assert "task5 0.60" in out


def test_tf32_matmuls_on_cuda_only():
    import torch

    from kuavo_train.device import use_fast_matmul

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        use_fast_matmul(torch.device("cpu"))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        use_fast_matmul(torch.device("cuda", 0))  # only flags: no GPU needed to set them
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
