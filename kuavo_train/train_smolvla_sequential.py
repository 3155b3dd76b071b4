"""Train one stage of the sequential curriculum (the seed's command, unchanged):

    python kuavo_train/train_smolvla_sequential.py --config-path=../configs/policy \\
        --config-name=smolvla_sequential_base task=tasks/task1_moving_grasp [key=value ...]

``--config-path`` is relative to this file, as with ``@hydra.main``. See kuavo_train/config/load.py
for how ``task=...`` and ``task.<field>=...`` are handled.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kuavo_train.cli import run_train_command  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_train_command(sys.argv[1:], relative_to=Path(__file__).resolve().parent))
