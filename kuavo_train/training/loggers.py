"""Where a stage reports: stdout, the text log ``smolvla_sequential_training.log``, TensorBoard and,
when ``training.wandb.enable``, Weights & Biases."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from kuavo_train.config.schema import WandbConfig
from kuavo_train.errors import KuavoError, first_line
from kuavo_train.layout import LOG_FILE


@dataclass
class WandbRunSpec:
    """One stage's W&B run: ``settings`` (training.wandb), the run's name, its group (the
    curriculum output dir's name) and the resolved config stored with it."""

    settings: WandbConfig
    name: str
    group: str
    config: dict


class StageLogger:
    """Prints to stdout and appends to the text log; scalars go to TensorBoard and, with a
    ``wandb`` spec whose ``enable`` is set, to a W&B run written under ``log_dir/wandb/`` (the
    stage runner passes both on rank 0 only)."""

    def __init__(
        self,
        log_dir: Path | None,
        tensorboard_dir: Path | None,
        silent: bool = False,
        wandb: WandbRunSpec | None = None,
    ):
        self._silent = silent
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(log_dir / LOG_FILE, "a", encoding="utf-8") if log_dir is not None else None
        self._writer = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(tensorboard_dir))
        self._wandb = None
        if wandb is not None and wandb.settings.enable and log_dir is not None:
            try:
                self._wandb = start_wandb_run(wandb, log_dir)
            except BaseException:
                self.close()
                raise
            mode = wandb.settings.mode
            if mode == "offline":
                run_dir = Path(self._wandb.dir).parent
                self.echo(f"W&B run {self._wandb.name} (offline) in {run_dir}; upload it with `wandb sync {run_dir}`")
            elif mode == "online":
                self.echo(f"W&B run {self._wandb.name}: {self._wandb.url}")

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
        if self._wandb is not None:
            self._wandb.log({tag: value}, step=step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self, exit_code: int = 0) -> None:
        """Idempotent; ``exit_code`` != 0 marks the W&B run failed (a stage that raised)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._wandb is not None:
            self._wandb.finish(exit_code=exit_code)
            self._wandb = None
        if self._file is not None:
            self._file.close()
            self._file = None


def start_wandb_run(spec: WandbRunSpec, log_dir: Path):
    """``wandb.init`` for one stage; files go to ``log_dir/wandb/``. Errors are one line."""
    try:
        import wandb
    except ImportError as exc:
        raise KuavoError(
            "training.wandb.enable=true needs the wandb package: `pip install -e '.[wandb]'` or `pip install wandb` "
            "(or set training.wandb.enable=false)"
        ) from exc
    os.environ.setdefault("WANDB_SILENT", "true")
    settings = spec.settings
    name = f"{settings.run_name}-{spec.name}" if settings.run_name else spec.name
    try:
        return wandb.init(
            project=settings.project,
            entity=settings.entity,
            name=name,
            group=spec.group,
            job_type="train",
            mode=settings.mode,
            dir=str(log_dir),
            config=json.loads(json.dumps(spec.config, default=str)),  # int keys -> str
            reinit="finish_previous",
        )
    except Exception as exc:  # noqa: BLE001 - wandb raises many types (auth, network, settings)
        first = first_line(exc)
        raise KuavoError(
            f"W&B could not start a run ({first}); for training.wandb.mode=online log in with "
            f"`wandb login` (or set WANDB_API_KEY), or use training.wandb.mode=offline"
        ) from exc


def quiet_third_party_logs() -> None:
    """lerobot/transformers print progress chatter that hides our output."""
    for name in ("lerobot", "transformers", "datasets", "huggingface_hub", "accelerate", "torchcodec"):
        logging.getLogger(name).setLevel(logging.WARNING)
