"""Every file and folder name of a run dir, a stage dir and a policy dir, in one place; depends on nothing.

    <run dir> = training.output_directory
      splits.json  feature_schema.json  normalization_stats.json  data_fingerprint.json
      curriculum_results.json  instruction_matrix.json  report/
      <stage dir> = task<N>_<name>/
        training_results.json  smolvla_sequential_training.log  tensorboard/  retraining.json
        best/  best_running/  last/  epoch<N>/          <- policy dirs
          model.safetensors  config.json  policy_preprocessor.json  policy_postprocessor.json
          kuavo_schema.json  kuavo_checkpoint.json  [training_state.pt: last/ only]
          [adapters/<task dir>/  kuavo_adapters.json: LoRA stages, policy.peft]
    <export dir> (kuavo-train export) = a policy dir + kuavo_export.json  README.txt  vlm/

Other modules ask this one for a name instead of spelling it, so a rename happens here only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# --- run dir -------------------------------------------------------------------------------------------------------
SPLITS_FILE = "splits.json"
FEATURE_SCHEMA_FILE = "feature_schema.json"
STATS_FILE = "normalization_stats.json"
DATA_FINGERPRINT_FILE = "data_fingerprint.json"
CURRICULUM_RESULTS_FILE = "curriculum_results.json"
INSTRUCTION_MATRIX_FILE = "instruction_matrix.json"
REPORT_DIR = "report"

# --- stage dir -----------------------------------------------------------------------------------------------------
STAGE_RESULTS_FILE = "training_results.json"
LOG_FILE = "smolvla_sequential_training.log"
TENSORBOARD_DIR = "tensorboard"
RETRAINING_MARKER = "retraining.json"
BEST_DIR = "best"
BEST_RUNNING_DIR = "best_running"
LAST_DIR = "last"
_EPOCH_DIR = re.compile(r"epoch(\d+)")

# --- policy dir (what plain lerobot loads, plus our schema and metadata) -------------------------------------------
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
SCHEMA_FILE = "kuavo_schema.json"
CHECKPOINT_META_FILE = "kuavo_checkpoint.json"
TRAINING_STATE_FILE = "training_state.pt"
ADAPTERS_DIR = "adapters"  # policy.peft: adapters/<task dir name>/ in peft's format
ADAPTER_TABLE_FILE = "kuavo_adapters.json"  # policy.peft.mode=per_task: task id -> adapter name
EXPORT_META_FILE = "kuavo_export.json"
EXPORT_VLM_DIR = "vlm"  # an export's VLM files (config, tokenizer; no weights), its vlm_model_name
EXPORT_README_FILE = "README.txt"
COMPLETE_POLICY_FILES = (MODEL_FILE, CONFIG_FILE, SCHEMA_FILE, CHECKPOINT_META_FILE)

# --- report dir ----------------------------------------------------------------------------------------------------
REPORT_FILE = "report.md"
LOSS_MATRIX_PNG = "loss_matrix.png"
CURVES_ALL_PNG = "curves_all.png"
INSTRUCTION_MATRIX_PNG = "instruction_matrix.png"
_CURVES_STAGE_PNG = re.compile(r"curves_stage(\d+)\.png")


def curves_stage_png(stage: int) -> str:
    return f"curves_stage{stage}.png"


def stage_of_curves_png(name: str) -> int | None:
    """The N of a ``curves_stage<N>.png`` file name, None for any other name."""
    match = _CURVES_STAGE_PNG.fullmatch(name)
    return int(match.group(1)) if match else None


def stage_dirname(task_id: int, name: str) -> str:
    """A stage dir's name, e.g. ``task2_weighing`` (``name="*"`` gives the glob of task ``task_id``'s stage dirs)."""
    return f"task{task_id}_{name}"


def epoch_dirname(number: int) -> str:
    return f"epoch{number}"


def epoch_of_dirname(name: str) -> int | None:
    """The N of an ``epoch<N>`` dir name, None for any other name."""
    match = _EPOCH_DIR.fullmatch(name)
    return int(match.group(1)) if match else None


def is_complete_policy_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in COMPLETE_POLICY_FILES)


@dataclass(frozen=True)
class RunPaths:
    """The files of a run dir that belong to no single stage."""

    root: Path

    @property
    def splits(self) -> Path:
        return self.root / SPLITS_FILE

    @property
    def feature_schema(self) -> Path:
        return self.root / FEATURE_SCHEMA_FILE

    @property
    def stats(self) -> Path:
        return self.root / STATS_FILE

    @property
    def data_fingerprint(self) -> Path:
        return self.root / DATA_FINGERPRINT_FILE

    @property
    def curriculum_results(self) -> Path:
        return self.root / CURRICULUM_RESULTS_FILE

    @property
    def instruction_matrix(self) -> Path:
        return self.root / INSTRUCTION_MATRIX_FILE

    @property
    def report_dir(self) -> Path:
        return self.root / REPORT_DIR

    def stage(self, dirname: str) -> StagePaths:
        return StagePaths(run_root=self.root, stage_dir=self.root / dirname)

    def is_run_dir(self) -> bool:
        """A run dir has its splits (written before stage 1 trains) or its results."""
        return self.splits.is_file() or self.curriculum_results.is_file()


@dataclass(frozen=True)
class StagePaths:
    """The files of one stage's dir."""

    run_root: Path
    stage_dir: Path

    @property
    def run(self) -> RunPaths:
        return RunPaths(self.run_root)

    @property
    def best(self) -> Path:
        return self.stage_dir / BEST_DIR

    @property
    def best_running(self) -> Path:
        """Best checkpoint of a stage still training; becomes best/ when the stage completes."""
        return self.stage_dir / BEST_RUNNING_DIR

    @property
    def last(self) -> Path:
        return self.stage_dir / LAST_DIR

    @property
    def results(self) -> Path:
        return self.stage_dir / STAGE_RESULTS_FILE

    @property
    def log(self) -> Path:
        return self.stage_dir / LOG_FILE

    def epoch(self, number: int) -> Path:
        return self.stage_dir / epoch_dirname(number)

    @property
    def retraining_marker(self) -> Path:
        """Present while a `training.overwrite=true` retraining of a complete stage is unfinished."""
        return self.stage_dir / RETRAINING_MARKER

    @property
    def tensorboard(self) -> Path:
        return self.stage_dir / TENSORBOARD_DIR
