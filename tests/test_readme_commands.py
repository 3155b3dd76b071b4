"""Every command the README shows runs as printed (on synthetic data, training commands in dry-run form).

The README's ```bash blocks are what a new user copies. Each command in them is either run here, from
the repo root, or listed in SKIPPED with the reason. The README's ```python block is run too, in a
fresh interpreter. Commands that need the network or run for tens of minutes (`hf download`, the sim
benchmark) are shown in ```text blocks and are not run here.

How they run (every Python start costs seconds of imports, so the commands share what they can):
- a plain `kuavo-train ...` or `python kuavo_train/train_smolvla_sequential.py ...` line (no pipes,
  `&&`, redirections) runs in this process, on the argv bash expands it to (`$ROOTS` and all), through
  `kuavo_train.cli.main` or the script itself (runpy, as `__main__`);
- the first `kuavo-train` command, and every other command (`make setup && source ...`), runs in a
  real shell, consecutive ones in one bash session with markers between them, so the installed
  console script is proven on PATH;
- a failing command fails the test naming the README command, with the tail of its own output.
Sizes only: training commands get `training.dry_run=true`, `kuavo-train evaluate` `--max-frames 4`.
"""

import os
import re
import runpy
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from kuavo_train.cli import main
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
TRAINING = (
    "python kuavo_train/train_smolvla_sequential.py",
    "kuavo-train run-all",
    "kuavo-train plan",
    "kuavo-train check-data $ROOTS",
)
# Size-only additions: the trained run's held-out frames, 4 per task instead of 64 (same code path).
SMALLER = {"kuavo-train evaluate": " --max-frames 4"}
# What a command's own output must show (beyond exit status 0).
EXPECTED_OUTPUT = {
    "kuavo-train plan": "Plan of stage 4",
    "kuavo-train evaluate": "written: ",
    "kuavo-train report": "Report: ",
    "kuavo-train export": "Exported ",
}
ENTRY_POINT = "kuavo-train"
SEED_SCRIPT = "kuavo_train/train_smolvla_sequential.py"
IN_PROCESS = re.compile(rf"({ENTRY_POINT}|python {re.escape(SEED_SCRIPT)})( [^|&;<>()`]*)?")
MARK = "::readme-command"


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
    for expected in (
        "kuavo-train check-data",
        "kuavo-train plan",
        "kuavo-train run-all",
        "kuavo-train evaluate",
        "kuavo-train report",
        "kuavo-train export",
        "train_smolvla_sequential.py",
    ):
        assert any(expected in c for c in commands), expected
    assert readme_python(README.read_text())


@pytest.fixture(scope="module")
def trained_run(seed_stage1, tmp_path_factory) -> Path:
    """A copy of a trained run (stage 1 only), so the README's evaluate/report/export can write into it."""
    output, _ = seed_stage1
    copy = tmp_path_factory.mktemp("readme") / "run"
    shutil.copytree(output, copy)
    return copy


def test_every_readme_command_runs_as_printed(demo_env, trained_run, tmp_path, capsys, monkeypatch):
    assignments, readme = readme_commands(README.read_text())
    data = {
        n: demo_env.root / f"task{n}_{name}"
        for n, name in enumerate(["moving_grasp", "weighing", "placement", "sorting"], start=1)
    }
    cache = next(o for o in demo_env.overrides if o.startswith("data.cache_dir="))
    # Small data: 6 episodes per task, so fewer held out than the base config's 10.
    dry_run = (
        f" training.dry_run=true training.output_directory={tmp_path / 'dry'} training.validation_episodes=2 {cache}"
    )
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
    }
    prelude = "\n".join(assignments)
    for n, path in data.items():
        prelude = prelude.replace(f"{DATA_ROOT_EXAMPLE}{n}", str(path))
    commands = []  # (as the README shows it, as run here)
    for command in readme:
        if any(command.startswith(skip) for skip in SKIPPED):
            continue
        shown = command
        for n, path in data.items():
            command = command.replace(f"{DATA_ROOT_EXAMPLE}{n}", str(path))
        if any(command.startswith(t) for t in TRAINING):
            command = _before_comment(command) + dry_run
        for prefix, addition in SMALLER.items():
            if command.startswith(prefix):
                command = _before_comment(command) + addition
        # The trained run has stage 1 only; its best/ stands in for the final model.
        command = command.replace(f"{RUN_EXAMPLE}/task4_sorting/best", f"{trained_run}/task1_moving_grasp/best")
        command = command.replace(RUN_EXAMPLE, str(trained_run)).replace(DEPLOY_EXAMPLE, str(tmp_path / "deploy"))
        commands.append((shown, command))

    # The first kuavo-train command goes through the installed console script, in a real shell.
    entry_point = next(i for i, (_, c) in enumerate(commands) if c.startswith(f"{ENTRY_POINT} "))
    in_process = [
        i for i, (_, c) in enumerate(commands) if IN_PROCESS.fullmatch(_before_comment(c)) and i != entry_point
    ]
    expanded = expand_argv(prelude, [_before_comment(commands[i][1]) for i in in_process], env)
    argvs = dict(zip(in_process, expanded, strict=True))
    monkeypatch.chdir(REPO_ROOT)
    outputs, shell_group = {}, []
    for i in range(len(commands) + 1):
        if i < len(commands) and i not in argvs:
            shell_group.append(i)
            continue
        if shell_group:  # consecutive shell commands: one bash session
            outputs |= run_in_one_shell(prelude, [commands[j] for j in shell_group], env, shell_group)
            shell_group = []
        if i < len(commands):
            code, output = run_in_process(argvs[i], capsys, monkeypatch)
            assert code == 0, f"README command failed (exit {code}): {commands[i][0]}\n{output[-5000:]}"
            outputs[i] = output
    for i, (shown, _) in enumerate(commands):
        for prefix, expected in EXPECTED_OUTPUT.items():
            if shown.startswith(prefix):
                assert expected in outputs[i], (
                    f"README command {shown}: no '{expected}' in its output\n{outputs[i][-3000:]}"
                )
    assert len(outputs) == len(commands) >= 9, [c for c, _ in commands]
    assert entry_point not in argvs and len(argvs) >= 7  # the entry point really ran in a shell, the rest here
    assert (tmp_path / "deploy" / "config.json").is_file()
    for code in readme_python(README.read_text()):
        code = code.replace(DEPLOY_EXAMPLE, str(tmp_path / "deploy"))
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"README python block failed:\n{code}\n{result.stderr[-3000:]}"


def expand_argv(prelude: str, commands: list[str], env: dict) -> list[list[str]]:
    """The argv bash would run for each command (variables, quotes, globs), from one bash process."""
    script = "set -e\n" + prelude + "\n" + "\n".join(f"printf '%s\\0' {c} $'\\x1e'" for c in commands)
    result = subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"bash could not expand the README commands:\n{result.stderr[-3000:]}"
    argvs, current = [], []
    for word in result.stdout.split("\0")[:-1]:
        if word == "\x1e":
            argvs.append(current)
            current = []
        else:
            current.append(word)
    assert len(argvs) == len(commands), (argvs, commands)
    return argvs


def run_in_process(argv: list[str], capsys, monkeypatch) -> tuple[object, str]:
    """(exit status, stdout + stderr) of `kuavo-train ...` (kuavo_train.cli.main) or `python <seed script> ...`."""
    capsys.readouterr()
    saved_path = sys.path[:]
    try:
        if argv[0] == ENTRY_POINT:
            code = main(argv[1:])
        else:
            assert argv[0] == "python" and argv[1] == SEED_SCRIPT, argv
            monkeypatch.setattr(sys, "argv", argv[1:])
            runpy.run_path(str(REPO_ROOT / SEED_SCRIPT), run_name="__main__")
            code = "the script did not exit through sys.exit"
    except SystemExit as exited:
        code = 0 if exited.code is None else exited.code
    except Exception:  # noqa: BLE001  (reported with the command's name)
        code = "exception"
        print(traceback.format_exc(), file=sys.stderr)
    finally:
        sys.path[:] = saved_path
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_in_one_shell(prelude: str, commands: list[tuple[str, str]], env: dict, indices: list[int]) -> dict[int, str]:
    """Run ``commands`` ((shown, command) pairs) in one bash session, `set -e`, a marker before and after each
    (with its exit status: `a && b` failing does not stop a `set -e` shell); {index: its output}."""
    lines = ["exec 2>&1", "set -e", prelude]
    for n, (_, command) in enumerate(commands):
        lines += [
            f"echo '{MARK} {n} start::'",
            command,
            f'__rc=$?; echo "{MARK} {n} end $__rc::"; [ "$__rc" -eq 0 ] || exit "$__rc"',
        ]
    result = subprocess.run(
        ["bash", "-c", "\n".join(lines)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600 * len(commands),
    )
    sections = re.split(rf"^{MARK} (\d+) (start|end(?: \d+)?)::$", result.stdout, flags=re.M)
    outputs, ended = {}, {}
    for n, what, text in zip(sections[1::3], sections[2::3], sections[3::3], strict=True):
        if what == "start":
            outputs[int(n)] = text
        else:
            ended[int(n)] = int(what.split()[1])
    for n, (shown, _) in enumerate(commands):
        if ended.get(n) != 0:
            status = ended.get(n, f"{result.returncode}, the shell stopped")
            output = outputs.get(n, result.stdout)
            pytest.fail(f"README command failed (exit {status}): {shown}\n{output[-5000:]}{result.stderr[-2000:]}")
    assert result.returncode == 0, result.stdout[-3000:]
    return {indices[n]: outputs[n] for n in range(len(commands))}


def _before_comment(command: str) -> str:
    return command.split("  #")[0].rstrip()
