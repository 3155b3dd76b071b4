"""All stages in curriculum order, each exactly as its own stage command would run it."""

from __future__ import annotations

from pathlib import Path

from kuavo_train.config.load import load_config
from kuavo_train.curriculum.stage import run_stage
from kuavo_train.errors import KuavoError
from kuavo_train.evaluation.results import format_matrix, read_stage_results
from kuavo_train.layout import RunPaths


def run_all(config_dir: Path, config_name: str, overrides: list[str]) -> int:
    _refuse_task_overrides(overrides)
    base = load_config(config_dir, config_name, overrides)
    failed = []
    for task_file in base.curriculum:
        cfg = load_config(config_dir, config_name, [*overrides, f"task={task_file}"])
        result = run_stage(cfg)
        if result.status == "interrupted":
            return 130
        if result.status == "planned" and cfg.stage < len(cfg.tasks):
            print("(later stages are planned with the same data; they start from the previous stage's best/)")
        if not result.criteria_passed:
            failed.append(cfg.task.dirname)
    if base.training.dry_run:
        return 0
    run = RunPaths(Path(base.training.output_directory).expanduser())
    run_root = run.root
    summary = read_stage_results(run.curriculum_results)
    if summary is not None:
        print()
        print(format_matrix(summary))
    print(
        f"\nOutputs: {run_root.resolve()}  (final multi-task model: {run.stage(base.tasks[-1].dirname).best.resolve()})"
    )
    print(f"TensorBoard: tensorboard --logdir {run_root}")
    if failed:
        print(f"Success criteria failed in: {', '.join(failed)}")
    return 1 if failed and base.training.strict_criteria else 0


def _refuse_task_overrides(overrides: list[str]) -> None:
    """In run-all, `task.<field>` applies to each stage's own task in turn (e.g. `task.training.lr=1e-4`: the same lr
    in every stage). For a task's data that is ambiguous (every task would read the same dataset), so it is refused."""
    for item in overrides:
        key = item.partition("=")[0].lstrip("+~")
        if key == "task":
            raise KuavoError(
                f"'{item}': run-all trains every task of the curriculum in order; to train one stage use "
                "`kuavo-train train task=...`, to change the tasks edit `curriculum` in the config"
            )
        if key == "task.data.root":
            raise KuavoError(
                f"'{item}': run-all trains every task, so task.data.root is ambiguous; give each task's "
                "dataset as data.roots.<task name>=PATH (e.g. data.roots.weighing=/data/task2)"
            )
        if key.startswith("task.data."):
            raise KuavoError(
                f"'{item}': run-all would apply it to every task's data in turn; set it in each task file "
                "(configs/policy/tasks/), or train one stage with `kuavo-train train task=<file> {item}`"
            )
