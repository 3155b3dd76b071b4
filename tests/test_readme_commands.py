"""Every command the README shows runs as printed (on synthetic data, training commands in dry-run form).

The README's ```bash blocks are what a new user copies. Each command in them is either run here, in
a shell, from the repo root with .venv on PATH, or listed in SKIPPED with the reason. The README's
```python block is run too. Commands that need the network or run for tens of minutes (`hf download`,
the sim benchmark) are shown in ```text blocks and are not run here.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
# The README's example paths, mapped onto what the tests have.
DATA_ROOT_EXAMPLE = "/data/kuavo/task"
RUN_EXAMPLE = "outputs/train/smolvla_sequential"
DEPLOY_EXAMPLE = "deploy/kuavo_policy"
SKIPPED = {
    "make demo": "run by the fresh-clone check (scripts/fresh-clone-check.sh), minutes long",
    "make test": "this is the test suite itself",
    "tensorboard --logdir": "starts a server that does not exit",
}
TRAINING = ("python kuavo_train/train_smolvla_sequential.py", "kuavo-train run-all", "kuavo-train plan",
            "kuavo-train check-data $ROOTS")


def readme_commands(text: str) -> tuple[list[str], list[str]]:
    """(shell variable assignments, commands) of the ```bash blocks, continuation lines joined."""
    assignments, commands = [], []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            (assignments if re.match(r"^[A-Z_]+=", line) else commands).append(line)
    return assignments, commands


def readme_python(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_has_the_commands_this_test_expects():
    _, commands = readme_commands(README.read_text())
    for expected in ("kuavo-train check-data", "kuavo-train plan", "kuavo-train run-all", "kuavo-train evaluate",
                     "kuavo-train report", "kuavo-train export", "train_smolvla_sequential.py"):
        assert any(expected in c for c in commands), expected
    assert readme_python(README.read_text())


@pytest.fixture(scope="module")
def trained_run(seed_stage1, tmp_path_factory) -> Path:
    """A copy of a trained run (stage 1 only), so the README's evaluate/report/export can write into it."""
    output, _ = seed_stage1
    copy = tmp_path_factory.mktemp("readme") / "run"
    shutil.copytree(output, copy)
    return copy


def test_every_readme_command_runs_as_printed(demo_env, trained_run, tmp_path):
    assignments, commands = readme_commands(README.read_text())
    data = {n: demo_env.root / f"task{n}_{name}"
            for n, name in enumerate(["moving_grasp", "weighing", "placement", "sorting"], start=1)}
    cache = next(o for o in demo_env.overrides if o.startswith("data.cache_dir="))
    # Small data: 6 episodes per task, so fewer held out than the base config's 10.
    dry_run = f" training.dry_run=true training.output_directory={tmp_path / 'dry'} training.validation_episodes=2 {cache}"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1"}
    prelude = "\n".join(assignments)
    for n, path in data.items():
        prelude = prelude.replace(f"{DATA_ROOT_EXAMPLE}{n}", str(path))
    ran = []
    for command in commands:
        if any(command.startswith(skip) for skip in SKIPPED):
            continue
        shown = command
        for n, path in data.items():
            command = command.replace(f"{DATA_ROOT_EXAMPLE}{n}", str(path))
        if any(command.startswith(t) for t in TRAINING):
            command = _before_comment(command) + dry_run
        # The trained run has stage 1 only; its best/ stands in for the final model.
        command = command.replace(f"{RUN_EXAMPLE}/task4_sorting/best", f"{trained_run}/task1_moving_grasp/best")
        command = command.replace(RUN_EXAMPLE, str(trained_run)).replace(DEPLOY_EXAMPLE, str(tmp_path / "deploy"))
        result = subprocess.run(["bash", "-c", f"set -e\n{prelude}\n{command}"], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"README command failed: {shown}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        ran.append(shown)
    assert len(ran) >= 9, ran
    assert (tmp_path / "deploy" / "config.json").is_file()
    for code in readme_python(README.read_text()):
        code = code.replace(DEPLOY_EXAMPLE, str(tmp_path / "deploy"))
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"README python block failed:\n{code}\n{result.stderr[-3000:]}"


def _before_comment(command: str) -> str:
    return command.split("  #")[0].rstrip()
