"""Where a stage reports: stdout, the text log ``smolvla_sequential_training.log``, TensorBoard."""

from __future__ import annotations

import logging
from pathlib import Path

LOG_FILE = "smolvla_sequential_training.log"


class StageLogger:
    """Prints to stdout and appends to the text log; scalars go to TensorBoard (rank 0 only)."""

    def __init__(self, log_dir: Path | None, tensorboard_dir: Path | None, silent: bool = False):
        self._silent = silent
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(log_dir / LOG_FILE, "a", encoding="utf-8") if log_dir is not None else None
        self._writer = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(tensorboard_dir))

    def echo(self, message: str = "") -> None:
        if self._silent:
            return
        print(message, flush=True)
        if self._file is not None:
            self._file.write(message + "\n")
            self._file.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._file is not None:
            self._file.close()


def quiet_third_party_logs() -> None:
    """lerobot/transformers print progress chatter that hides our output."""
    for name in ("lerobot", "transformers", "datasets", "huggingface_hub", "accelerate", "torchcodec"):
        logging.getLogger(name).setLevel(logging.WARNING)
