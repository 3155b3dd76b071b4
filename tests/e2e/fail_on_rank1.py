"""The stage command, except that rank 1 alone raises at its 3rd optimizer step (as an out-of-memory would)."""

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import kuavo_train.training.loop as loop  # noqa: E402
from kuavo_train.cli import run_train_command  # noqa: E402

MESSAGE = "out of memory (simulated on rank 1)"
_train_step = loop.train_step


def train_step_failing_on_rank1(ctx, raw, state):
    if os.environ.get("RANK") == "1" and state.step == 2:
        raise RuntimeError(MESSAGE)
    return _train_step(ctx, raw, state)


loop.train_step = train_step_failing_on_rank1

if __name__ == "__main__":
    sys.exit(run_train_command(sys.argv[1:], relative_to=REPO_ROOT / "kuavo_train"))
