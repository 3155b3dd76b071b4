"""Command line: `kuavo-train <command>` (also `python -m kuavo_train <command>`).

The sub-command contract: each command is a function from its arguments (argv after the command name)
to an exit code (0 ok, 1 the command's own "found problems" result, 130 interrupted) that raises
KuavoError for user errors; it never prints errors or chooses error codes itself. `kuavo_train.errors.guarded`
(used here and by the modules' own `python -m` entries) prints the one line and exits 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kuavo_train.config.args import SCRIPT_DIR, parse_config_args, wants_help
from kuavo_train.errors import KuavoError, guarded

CONFIG_OPTIONS = """\
options:
  -h, --help            show this help and exit
  --config-path DIR     folder of the YAML configs (default: configs/policy; a relative path is taken
                        relative to kuavo_train/, as in the seed command's --config-path=../configs/policy)
  --config-name NAME    config file in that folder, without .yaml (default: smolvla_sequential_base;
                        the demo's: smolvla_sequential_demo)
  key=value ...         Hydra-style overrides of any config key (list: `kuavo-train keys`)
"""

COMMON_OVERRIDES = """\
most used overrides:
  data.roots.<task name>=PATH        a task's dataset dir (names: moving_grasp weighing placement sorting);
                                     give every task's root at every stage: stage 1 computes the
                                     normalization over all of them
  training.output_directory=DIR      where the stages write (default outputs/train/smolvla_sequential)
  training.batch_size=8              lower it when the GPU runs out of memory
  training.device=cuda               auto (default) | cpu | cuda | cuda:N
  policy.pretrained_path=PATH        stage 1's starting model: hub id, local dir, or null (fresh)
  policy.vlm_model_name=PATH         the VLM (hub id or local dir; tokenizer and architecture)
  sequential.stage2_replay.task1=0.3 sequential.stage2_replay.task2=0.7   a stage's replay shares (sum 1)
  training.dry_run=true              print the plan (mix, samples, steps, time, disk) and exit
  training.overwrite=true            retrain a complete stage (its old best/ stays until the new one is done)
every key with its type, default and meaning: kuavo-train keys [PREFIX]
"""


@dataclass(frozen=True)
class Command:
    summary: str
    run: Callable[[list[str]], int]
    help: str | None = None  # None: the command parses its own --help (argparse)


def _train(argv: list[str], relative_to: Path = SCRIPT_DIR) -> int:
    from kuavo_train.config.load import load_config
    from kuavo_train.curriculum.stage import run_stage

    args = parse_config_args(argv, relative_to)
    cfg = load_config(args.config_dir, args.config_name, args.overrides)
    result = run_stage(cfg)
    if result.status == "interrupted":
        return 130
    return 1 if (cfg.training.strict_criteria and not result.criteria_passed) else 0


def _run_all(argv: list[str]) -> int:
    from kuavo_train.curriculum.run_all import run_all

    args = parse_config_args(argv)
    return run_all(args.config_dir, args.config_name, args.overrides)


def _plan(argv: list[str]) -> int:
    return _run_all([*argv, "training.dry_run=true"])


def _keys(argv: list[str]) -> int:
    from kuavo_train.config.keys import config_keys, format_keys
    from kuavo_train.config.load import load_config

    args = parse_config_args(argv)
    prefixes = [a for a in args.overrides if "=" not in a]
    cfg = load_config(args.config_dir, args.config_name, [a for a in args.overrides if "=" in a])
    docs = config_keys(cfg)
    print(f"# keys of {args.config_dir / args.config_name}.yaml: key (type) = value in this config, then its meaning")
    for prefix in prefixes or [None]:
        text = format_keys(docs, prefix)
        if not text:
            raise KuavoError(
                f"no config key starts with '{prefix}'; try one of: task policy training sequential criteria data"
            )
        print(text)
    return 0


def _check_data(argv: list[str]) -> int:
    from kuavo_train.data.check import check_data_main

    return check_data_main(argv)


def _report(argv: list[str]) -> int:
    from kuavo_train.reporting.report import report_main

    return report_main(argv)


def _evaluate(argv: list[str]) -> int:
    from kuavo_train.evaluation.instruction_following import evaluate_main

    return evaluate_main(argv)


def _export(argv: list[str]) -> int:
    from kuavo_train.deploy.export import export_main

    return export_main(argv)


def _demo(argv: list[str]) -> int:
    from kuavo_train.demo.run import run_demo

    return run_demo(argv)


TRAIN_HELP = f"""\
usage: kuavo-train train [--config-path DIR] [--config-name NAME] task=tasks/<task file> [key=value ...]
   or: python kuavo_train/train_smolvla_sequential.py --config-path=../configs/policy \\
         --config-name=smolvla_sequential_base task=tasks/task1_moving_grasp [key=value ...]

Train one stage of the curriculum: the task named by task=... . Stage 1 starts from
policy.pretrained_path (lerobot/smolvla_base); stage N starts from stage N-1's best/ (an error prints
the command that makes it). A complete stage is skipped ("already complete"); an interrupted one
resumes from its last/ ("Resuming from epoch E step S").

{CONFIG_OPTIONS}
  task=tasks/task2_weighing          the stage to train (a file under the config dir's tasks/)
  task.<field>=value                 a field of this stage's task file only, e.g. task.training.lr=3e-5

{COMMON_OVERRIDES}"""

RUN_ALL_HELP = f"""\
usage: kuavo-train run-all [--config-path DIR] [--config-name NAME] [key=value ...]

Train every stage of the curriculum in order, each exactly as `kuavo-train train task=...` would,
skipping complete stages and resuming an interrupted one. A task.<field> override applies to each
stage's own task in turn (task.training.lr=1e-4: the same lr in every stage); task.data.* is refused
(every task would read the same data): give datasets as data.roots.<task name>=PATH.

{CONFIG_OPTIONS}
{COMMON_OVERRIDES}"""

PLAN_HELP = f"""\
usage: kuavo-train plan [--config-path DIR] [--config-name NAME] [key=value ...]

Print the plan of every stage (replay mix, frames, samples per epoch, steps, lr, validation frames,
rough time and disk) and exit; same as run-all with training.dry_run=true. Trains nothing, but it
does read all datasets: it converts v2.1 data into the ingest cache (data.cache_dir) once, and writes
the run's splits.json, normalization_stats.json and feature_schema.json into training.output_directory
(reused by training). On 4 x 200 real episodes expect the first plan to take as long as one pass of
conversion and statistics over the data (minutes); later plans reuse the cache.

{CONFIG_OPTIONS}
{COMMON_OVERRIDES}"""

DEMO_HELP = f"""\
usage: kuavo-train demo [key=value ...]      (make demo runs it)

Build a tiny SmolVLM-architecture backbone (random weights) and four synthetic Kuavo-format
datasets into demo_data/ (once), train all four stages on CPU with config smolvla_sequential_demo
into outputs/demo/, then evaluate language switching and write outputs/demo/report/report.md.
A few minutes. The tiny random-init model shows the pipeline, not a good policy: some success
criteria fail by design (README, "What the demo shows").

{CONFIG_OPTIONS}"""

KEYS_HELP = """\
usage: kuavo-train keys [--config-path DIR] [--config-name NAME] [PREFIX ...] [key=value ...]

Print every config key with its type, its value in the chosen config (after overrides) and its
meaning, generated from the typed schema (kuavo_train/config/schema.py). PREFIX filters, e.g.
`kuavo-train keys training.` or `kuavo-train keys --config-name=smolvla_sequential_demo policy.`

options:
  -h, --help            show this help and exit
  --config-path DIR, --config-name NAME   as for train
"""

COMMANDS: dict[str, Command] = {
    "train": Command(
        "train one stage (same as python kuavo_train/train_smolvla_sequential.py ...)", _train, TRAIN_HELP
    ),
    "run-all": Command("train every stage in order, skipping complete ones", _run_all, RUN_ALL_HELP),
    "plan": Command("print every stage's plan (mix, steps, time, disk) and exit", _plan, PLAN_HELP),
    "check-data": Command("inspect dataset dirs and report problems (never modifies them)", _check_data),
    "evaluate": Command("instruction x task action-error matrix and latency of a checkpoint", _evaluate),
    "report": Command("report.md + PNGs (loss matrix, curves, criteria) of a run", _report),
    "export": Command("write a self-contained folder of a checkpoint for deployment", _export),
    "keys": Command("list every config key with type, value and meaning", _keys, KEYS_HELP),
    "demo": Command("tiny backbone + synthetic data: the whole curriculum on CPU in minutes", _demo, DEMO_HELP),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: kuavo-train <command> [arguments]   (kuavo-train <command> --help for its options)",
        "",
        "Sequential multi-task fine-tuning of one SmolVLA policy on the Kuavo tasks.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `kuavo-train keys | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (silence the flush at exit)
        return 0


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(usage(), file=sys.stderr)
        print(f"error: unknown command '{name}'", file=sys.stderr)
        return 2
    command = COMMANDS[name]
    if command.help is not None and wants_help(rest):
        print(command.help)
        return 0
    return guarded(lambda: command.run(rest))


def run_train_command(argv: list[str], relative_to: Path) -> int:
    """The seed script's entry: `kuavo-train train` with --config-path relative to ``relative_to``."""
    if wants_help(argv):
        print(TRAIN_HELP)
        return 0
    return guarded(lambda: _train(argv, relative_to))
