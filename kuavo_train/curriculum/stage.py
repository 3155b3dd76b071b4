"""Run one stage of the curriculum: from the previous stage's best/ to this task's best/.

Flow: stage status -> starting checkpoint -> data (ingest, splits, merged stats) -> policy +
processors + freezing -> replay-mixed training with periodic multi-task validation and
checkpoints -> final evaluation of best on every task -> criteria, results files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import torch

from kuavo_train.config.schema import Config
from kuavo_train.curriculum.build import (
    build_stage_training,
    rank_batch_size,
    seed_everything,
    stage_seed,
)
from kuavo_train.curriculum.paths import StagePaths, is_stage_complete, previous_best, stage_paths
from kuavo_train.curriculum.plan import format_plan, plan_stage
from kuavo_train.curriculum.record import resolved_config, stage_record
from kuavo_train.data.prepare import CurriculumData, prepare_curriculum_data, task_dataset
from kuavo_train.data.schema import FeatureSchema
from kuavo_train.data.stats import stats_hash
from kuavo_train.data.transfer import shared_memory_free, shared_memory_need, shared_memory_problem
from kuavo_train.device import choose_device, use_fast_matmul
from kuavo_train.errors import KuavoError
from kuavo_train.evaluation.forgetting import (
    forgetting_analysis,
    format_criteria_table,
    success_criteria,
)
from kuavo_train.evaluation.results import read_stage_results, write_curriculum_results
from kuavo_train.evaluation.validate import limit_samples, make_loader, rank_shard, validate_tasks
from kuavo_train.files import recover_interrupted_writes, weights_sha256, write_dir_atomically, write_json_atomically
from kuavo_train.layout import CHECKPOINT_META_FILE, MODEL_FILE, is_complete_policy_dir
from kuavo_train.policy.adapters import load_active_weights
from kuavo_train.policy.factory import count_parameters
from kuavo_train.training.checkpoint import (
    load_training_state,
    prune_epoch_dirs,
    read_checkpoint_meta,
    restore_rng_state,
    rng_state,
    save_policy_dir,
)
from kuavo_train.training.distributed import DistContext, init_distributed
from kuavo_train.training.loggers import StageLogger, WandbRunSpec, quiet_third_party_logs
from kuavo_train.training.loop import LoopState, StopRequest, make_autocast, precision_label, train_epoch


@contextmanager
def stop_on_signals():
    """SIGTERM/SIGINT ask the loop to stop after the current step (then last/ is saved)."""
    stop = StopRequest()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class StageResult:
    status: str  # "complete", "skipped", "planned", "interrupted"
    criteria_passed: bool = True
    results_path: Path | None = None


def run_stage(cfg: Config) -> StageResult:
    """Train ``cfg.task`` as stage ``cfg.stage``; see the module docstring for the flow."""
    quiet_third_party_logs()
    paths = stage_paths(cfg)
    if os.environ.get("RANK", "0") == "0":  # rank 0 only; others never write
        recover_interrupted_writes(paths.stage_dir)
    if is_stage_complete(paths) and not cfg.training.overwrite and not cfg.training.dry_run:
        print(
            f"Stage {cfg.stage} ({cfg.task.dirname}) is already complete: {paths.best} "
            f"(training.overwrite=true retrains it)"
        )
        return StageResult("skipped", results_path=paths.results)
    choose_device(cfg.training.device)  # an unusable training.device fails here, before minutes of data preparation
    started = time.perf_counter()
    dist = init_distributed(cfg.training.device)
    data = _prepare_data_once(cfg, paths, dist)
    preparation_s = time.perf_counter() - started
    if cfg.training.dry_run:
        print(format_plan(plan_stage(cfg, data)))
        return StageResult("planned")
    init_path = starting_checkpoint(cfg)
    dist.main_does(lambda: _check_output_writable(paths))
    runner = StageRunner(cfg, paths, data, init_path, dist, started=started)
    runner.phase_seconds["data_preparation"] = preparation_s
    return runner.run()


def starting_checkpoint(cfg: Config) -> str | Path | None:
    """task.training.pretrained_path if set; else stage 1: policy.pretrained_path, stage N: stage N-1's best/."""
    if cfg.task.training.pretrained_path is not None:
        return cfg.task.training.pretrained_path
    return previous_best(cfg) if cfg.stage > 1 else cfg.policy.pretrained_path


def _prepare_data_once(cfg: Config, paths: StagePaths, dist: DistContext) -> CurriculumData:
    """Rank 0 ingests and writes the shared files first; the other ranks then read them."""
    data = dist.main_does(lambda: prepare_curriculum_data(cfg, paths.run_root))
    return data if dist.is_main else prepare_curriculum_data(cfg, paths.run_root)


def _check_output_writable(paths: StagePaths) -> None:
    try:
        paths.stage_dir.mkdir(parents=True, exist_ok=True)
        probe = paths.stage_dir / ".write_probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise KuavoError(
            f"output dir {paths.stage_dir} is not writable ({exc.strerror}); "
            "set training.output_directory to a writable dir"
        ) from exc


class StageRunner:
    """Holds what one stage builds once (policy, data, optimizer) and runs its epochs."""

    def __init__(
        self,
        cfg: Config,
        paths: StagePaths,
        data: CurriculumData,
        init_path: str | Path | None,
        dist: DistContext | None = None,
        started: float | None = None,
    ):
        self.cfg, self.paths, self.data, self.init_path = cfg, paths, data, init_path
        # Wall time of this process from `started` (run_stage's start) and its phases outside the epoch loop;
        # the loop's own seconds live in LoopState, so a resumed stage keeps those of its earlier processes.
        self.started = time.perf_counter() if started is None else started
        self.phase_seconds = {
            "data_preparation": 0.0,
            "model_build": 0.0,
            "feature_cache": 0.0,
            "final_evaluation": 0.0,
        }
        self.loop_seconds_before_resume = 0.0
        self.dist = dist or DistContext()
        self.stage, self.task = cfg.stage, cfg.task
        self.device_choice = choose_device(cfg.training.device)
        self.device = _rank_device(self.device_choice.device, self.dist)
        use_fast_matmul(self.device)
        self.autocast = make_autocast(self.device, cfg.training.mixed_precision)
        if self.dist.is_main:
            wandb = WandbRunSpec(cfg.training.wandb, cfg.task.dirname, paths.run_root.name, resolved_config(cfg))
            self.log = StageLogger(paths.stage_dir, paths.tensorboard, wandb=wandb)
        else:
            self.log = StageLogger(None, None, silent=True)
        self.state = LoopState()
        self.stats_hash = stats_hash(data.stats)

    # ---- set-up -------------------------------------------------------------------------------
    def _resume_source(self) -> Path | None:
        """last/ of this run, if any. A retraining (overwrite) run only resumes its own last/."""
        marker = self.paths.retraining_marker
        if not marker.exists() and self.cfg.training.overwrite:
            self.dist.main_does(lambda: write_json_atomically(marker, {"run_id": uuid.uuid4().hex}))
            return None
        if not self.cfg.training.resume or not is_complete_policy_dir(self.paths.last):
            return None
        own_run = read_checkpoint_meta(self.paths.last).get("run_id")
        return self.paths.last if own_run == self.run_id else None

    @property
    def run_id(self) -> str | None:
        """Id of a retraining run (from its marker); None for a first training."""
        marker = self.paths.retraining_marker
        return json.loads(marker.read_text())["run_id"] if marker.exists() else None

    def _build(self) -> None:
        started = time.perf_counter()
        seed_everything(stage_seed(self.cfg))
        resume = self._resume_source()
        if resume is not None:
            self._check_resume_fits(resume)
        self._check_parent_compatible()
        self._check_shared_memory()
        lora = self.cfg.policy.peft.mode != "off"  # a LoRA stage resumes its adapter on its own start
        start_from = self.init_path if lora else resume or self.init_path
        self.training = t = build_stage_training(
            self.cfg, self.data, start_from, self.device, self.dist, echo=self.log.echo
        )
        self.data = t.data  # with the feature caches, when on
        self.policy, self.preprocessor, self.postprocessor = t.policy, t.preprocessor, t.postprocessor
        self.train_set, self.sampler, self.train_loader = t.train_set, t.sampler, t.train_loader
        self.steps_per_epoch, self.optimizer, self.scheduler = t.steps_per_epoch, t.optimizer, t.scheduler
        self._check_disk_space()
        self.val_loaders = self._validation_loaders(self._validated_tasks())
        if resume is not None:
            self._restore(resume)
        self._log_setup(start_from, t.total_steps)
        self.phase_seconds["feature_cache"] = t.feature_caches.seconds if t.feature_caches else 0.0
        self.phase_seconds["model_build"] = time.perf_counter() - started - self.phase_seconds["feature_cache"]

    @property
    def rank_batch_size(self) -> int:
        """Samples per process per step; ``training.batch_size`` is the global batch."""
        return rank_batch_size(self.cfg, self.dist.world_size)

    def _check_parent_compatible(self) -> None:
        """A run's stages share one normalization; a checkpoint from elsewhere (a base) is fine-tuned under ours."""
        start, run = Path(str(self.init_path)).resolve(), self.paths.run_root.resolve()  # only this run's checkpoints
        if not (start / CHECKPOINT_META_FILE).is_file() or not start.is_relative_to(run):
            return
        parent = read_checkpoint_meta(start)
        if parent.get("stats_hash") != self.stats_hash:
            raise KuavoError(
                f"the previous stage's checkpoint {self.init_path} was trained with other normalization stats "
                f"({parent.get('stats_hash')} vs {self.stats_hash} in {self.paths.run_root}/normalization_stats.json); "
                "all stages of a curriculum must share one normalization: retrain from stage 1 in a new output dir"
            )
        if "schema" not in parent or FeatureSchema.from_dict(parent["schema"]) != self.data.schema:
            raise KuavoError(
                f"the previous stage's checkpoint {self.init_path} has another feature schema (cameras/sizes) "
                "than this data; retrain from stage 1"
            )

    @cached_property
    def _start_weights(self) -> str | None:
        """Id of the weights this stage started from: a LoRA stage's last/ holds only its adapter on them."""
        start = Path(str(self.init_path)) if self.init_path else None
        return weights_sha256(start) if start and start.is_dir() else (str(self.init_path) if start else None)

    def _check_resume_fits(self, last: Path) -> None:
        """A resume continues the same training: same policy.peft, and for LoRA the same start weights."""
        saved = read_checkpoint_meta(last)
        peft = asdict(self.cfg.policy.peft)
        was = saved.get("peft", {"mode": "off"} if peft["mode"] == "off" else None)  # None: not recorded (older)
        if was is not None and was != (peft if peft["mode"] != "off" else {"mode": "off"}):
            raise KuavoError(
                f"{last} was trained with policy.peft={was}, not {peft}: rerun with "
                "those settings to resume, or retrain the stage with training.overwrite=true"
            )
        if "start_weights" in saved and saved["start_weights"] != self._start_weights:
            raise KuavoError(
                f"{last} holds an adapter trained on other start weights than {self.init_path} (retrained since?): "
                "retrain this stage with training.overwrite=true"
            )

    def _check_shared_memory(self) -> None:
        """Loader workers pass batches through /dev/shm (64 MB in a default Docker container): refuse before they
        crash (the feature cache checks its embeddings' batches itself)."""
        need = shared_memory_need(
            self.data.schema, self.cfg.training.batch_size, self.cfg.policy.chunk_size, self.cfg.training.num_workers
        )  # global batch: all processes share /dev/shm
        problem = shared_memory_problem(need, shared_memory_free())
        if problem:
            raise KuavoError(problem)

    def _check_disk_space(self) -> None:
        """Refuse to start when the checkpoints this stage will keep cannot fit."""
        counts = count_parameters(self.policy)
        weights = 4 * counts.total
        kept_dirs = 3 + self.cfg.training.keep_last_epochs  # best_running, best, last, epoch{N}/ + one being written
        needed = weights * (kept_dirs + 1) + 2 * 4 * counts.trainable  # + Adam moments in last/
        free = shutil.disk_usage(self.paths.stage_dir).free
        if free < needed:
            raise KuavoError(
                f"{self.paths.stage_dir} has {free / 1e9:.1f} GB free but this stage needs about {needed / 1e9:.1f} GB "
                f"for its checkpoints; free space, lower training.keep_last_epochs or set training.output_directory"
            )

    def _warn_stale_later_stages(self) -> None:
        """Redoing a stage makes later stages trained from its old best/ stale."""
        new_hash = weights_sha256(self.paths.best)
        for task in self.cfg.tasks[self.stage :]:
            results = read_stage_results(stage_paths(self.cfg, task).results)
            parent = (results or {}).get("parent_checkpoint", {})
            if results and parent.get("path") == str(self.paths.best) and parent.get("model_sha256") != new_hash:
                self.log.echo(
                    f"⚠️  stage {self.cfg.stage_of(task.id)} ({task.dirname}) was trained from an older best/ of this "
                    f"stage and is now stale; retrain it with training.overwrite=true"
                )

    def _validated_tasks(self) -> list[int]:
        if self.cfg.training.validate_all_previous_tasks:
            return [t.id for t in self.cfg.seen_tasks]
        return [self.task.id]

    def _validation_loaders(self, task_ids: list[int]) -> dict:
        loaders = {}
        for task_id in task_ids:
            dataset = task_dataset(self.data, task_id, self.data.splits[task_id].val, self.cfg.policy.chunk_size)
            dataset = limit_samples(dataset, self.cfg.training.max_validation_samples)
            dataset = rank_shard(dataset, self.dist.world_size, self.dist.rank)
            loaders[task_id] = make_loader(dataset, self.rank_batch_size, self.cfg.training.num_workers)
        return loaders

    def _restore(self, last: Path) -> None:
        if self.training.adapters is not None:
            load_active_weights(self.training.adapters, last)
        saved = load_training_state(last)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = LoopState(**saved["loop"])
        self.loop_seconds_before_resume = self._loop_seconds()
        restore_rng_state(saved["rng"])
        self.log.echo(f"Resuming from epoch {self.state.epoch} step {self.state.step}")
        if self.state.batches_into_epoch:
            self.log.echo(f"  (epoch {self.state.epoch + 1} continues after batch {self.state.batches_into_epoch})")

    def _log_setup(self, start_from, total_steps: int) -> None:
        mix = ", ".join(f"task{k} {v:.2f}" for k, v in self.cfg.replay_mix(self.stage).items())
        self.log.echo(f"=== Stage {self.stage}/{len(self.cfg.tasks)}: task {self.task.id} {self.task.name} ===")
        self.log.echo(f"start from: {start_from or 'fresh SmolVLA on ' + self.cfg.policy.vlm_model_name}")
        processes = f" = {self.dist.world_size} processes x {self.rank_batch_size}" if self.dist.enabled else ""
        self.log.echo(
            f"device {self.device} ({self.device_choice.reason}), "
            f"precision {precision_label(self.device, self.cfg.training.mixed_precision)}, "
            f"video decoding {self.data.video_backend}"
        )
        schema = self.data.schema
        self.log.echo(
            f"features: {len(schema.cameras)} cameras "
            f"({', '.join(c.removeprefix('observation.images.') for c in schema.cameras)}), "
            f"state {schema.state_dim}, action {schema.action_dim}"
        )
        self.log.echo(
            f"lr {self.task.training.lr:g}, epochs {self.task.training.max_epoch}, "
            f"{self.steps_per_epoch} steps/epoch ({total_steps} total), batch {self.cfg.training.batch_size}{processes}"
            + (
                f" x {accumulation} accumulated = {self.cfg.training.batch_size * accumulation} per step"
                if (accumulation := self.cfg.training.gradient_accumulation_steps) > 1
                else ""
            )
        )
        self.log.echo(f"replay mix: {mix}; {len(self.sampler)} samples/epoch")
        self.log.echo(f"parameters: {count_parameters(self.policy)}")

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> StageResult:
        try:
            return self._run()
        except BaseException:
            self.log.close(exit_code=1)  # the W&B run, TensorBoard writer and log file of a stage that raised
            raise

    def _run(self) -> StageResult:
        self._build()
        ctx = self.training.ctx
        max_epoch = self.task.training.max_epoch
        with stop_on_signals() as stop:
            while self.state.epoch < max_epoch:
                epoch = self.state.epoch + 1
                self.sampler.set_epoch(epoch, skip_samples=self.state.batches_into_epoch * self.rank_batch_size)
                started = time.perf_counter()
                train_epoch(
                    ctx,
                    self.train_loader,
                    self.state,
                    self.steps_per_epoch,
                    self.log.scalar,
                    desc=f"stage {self.stage} epoch {epoch}/{max_epoch}",
                    stop=stop,
                )
                self.state.seconds_training += time.perf_counter() - started
                if self.dist.any(stop.requested):
                    return self._interrupted(stop.signal or signal.SIGTERM)
                self._end_epoch(epoch, max_epoch)
        return self._finish()

    def _end_epoch(self, epoch: int, max_epoch: int) -> None:
        mean_loss = self.state.epoch_loss_sum / max(self.state.epoch_loss_count, 1)
        self.state.train_losses.append(mean_loss)
        self.state.epoch, self.state.batches_into_epoch = epoch, 0
        self.state.epoch_loss_sum, self.state.epoch_loss_count = 0.0, 0
        self.log.echo(f"epoch {epoch}/{max_epoch}: train loss {mean_loss:.4f} (step {self.state.step})")
        self._periodic_work(epoch, max_epoch)

    def _interrupted(self, signum: int) -> StageResult:
        self._save(self.paths.last, self.state.epoch, with_state=True)
        self.log.echo(
            f"interrupted by signal {signum} at epoch {self.state.epoch + 1} batch {self.state.batches_into_epoch}: "
            f"state saved to {self.paths.last}; rerun the same command to resume"
        )
        self.log.close()
        return StageResult("interrupted", criteria_passed=False)

    def _periodic_work(self, epoch: int, max_epoch: int) -> None:
        is_last_epoch = epoch == max_epoch
        is_validation_epoch = epoch % self.cfg.training.validation_freq_epoch == 0 or is_last_epoch
        is_saving_epoch = epoch % self.cfg.training.save_freq_epoch == 0
        if is_validation_epoch:
            self._validate_and_keep_best(epoch)
        started = time.perf_counter()
        if is_saving_epoch:
            self._save(self.paths.epoch(epoch), epoch)
            prune_epoch_dirs(self.paths.stage_dir, self.cfg.training.keep_last_epochs)
        self._save(self.paths.last, epoch, with_state=True)
        self.state.seconds_checkpointing += time.perf_counter() - started
        self.log.flush()

    def _validation_losses(self) -> dict[int, float]:
        """The current weights' validation loss on every task of ``self.val_loaders``."""
        return validate_tasks(
            self.policy,
            self.preprocessor,
            self.val_loaders,
            self.device,
            self.autocast,
            echo=self.log.echo,
            dist=self.dist,
            routed=self.training.adapters.routed if self.training.adapters else None,
        )

    def _validate_and_keep_best(self, epoch: int) -> None:
        started = time.perf_counter()
        losses = self._validation_losses()
        forgetting_analysis(
            losses, self.task.id, self._own_stage_losses(), self.stage, self.cfg.criteria, echo=self.log.echo
        )
        self.state.seconds_validating += time.perf_counter() - started
        for task_id, loss in losses.items():
            self.log.scalar(f"validation/task{task_id}_loss", loss, self.state.step)
        self.state.validations.append(
            {"epoch": epoch, "step": self.state.step, "losses": {str(k): v for k, v in losses.items()}}
        )
        current = losses[self.task.id]
        if current < self.state.best_loss:
            self.state.best_loss, self.state.best_epoch = current, epoch
            started = time.perf_counter()
            self._save(self.paths.best_running, epoch)
            self.state.seconds_checkpointing += time.perf_counter() - started
            self.log.echo(
                f"  new best on task {self.task.id}: {current:.4f} (epoch {epoch}) -> {self.paths.best_running.name}/"
            )

    def _own_stage_losses(self) -> dict[int, float]:
        """Loss of each earlier task at the end of its own stage (the forgetting reference)."""
        references = {}
        for task in self.cfg.tasks[: self.stage - 1]:
            results = read_stage_results(stage_paths(self.cfg, task).results)
            if results is not None:
                references[task.id] = results["final_validation"][str(task.id)]
        return references

    def _save(self, target: Path, epoch: int, with_state: bool = False) -> None:
        meta = {
            "task_id": self.task.id,
            "task_name": self.task.name,
            "stage": self.stage,
            "epoch": epoch,
            "step": self.state.step,
            "stats_hash": self.stats_hash,
            "schema": self.data.schema.to_dict(),
            "best_loss": self.state.best_loss if math.isfinite(self.state.best_loss) else None,
            "run_id": self.run_id,
        }
        if self.cfg.policy.peft.mode != "off":  # what a resume must match (_check_resume_fits)
            meta.update(peft=asdict(self.cfg.policy.peft), start_weights=self._start_weights)

        def save() -> None:
            state = None
            if with_state:
                state = {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "loop": asdict(self.state),
                    "rng": rng_state(),
                }
            save_policy_dir(
                target,
                self.policy,
                self.preprocessor,
                self.postprocessor,
                self.data.schema,
                meta,
                state,
                self.training.adapters,
            )

        self.dist.main_does(save)

    # ---- the end ------------------------------------------------------------------------------
    def _finish(self) -> StageResult:
        started = time.perf_counter()
        self._load_weights(self._best_so_far())
        all_ids = [t.id for t in self.cfg.tasks]
        extra = [t for t in all_ids if t not in self.val_loaders]
        self.val_loaders.update(self._validation_loaders(extra))
        self.log.echo(f"Final evaluation of best (epoch {self.state.best_epoch}) on every curriculum task:")
        losses = self._validation_losses()
        seen = {t.id: losses[t.id] for t in self.cfg.seen_tasks}
        verdicts = forgetting_analysis(
            seen, self.task.id, self._own_stage_losses(), self.stage, self.cfg.criteria, echo=self.log.echo
        )
        criteria = success_criteria(seen, self.task.id, self.stage, self.cfg.criteria)
        self.log.echo(format_criteria_table(criteria, self.stage))
        passed = all(c.passed for c in criteria)
        self.phase_seconds["final_evaluation"] = time.perf_counter() - started
        timings = self.dist.main_does(lambda: self._publish(losses, seen, criteria, verdicts))
        if not self.dist.is_main:
            return StageResult("complete", criteria_passed=passed, results_path=self.paths.results)
        self.log.echo(f"Stage {self.stage} done: best {self.paths.best}  results {self.paths.results}")
        self.log.echo(format_timings(timings))
        if not passed:
            self.log.echo(
                "⚠️  Some success criteria failed (see the table above)."
                + (" training.strict_criteria=true: exiting non-zero." if self.cfg.training.strict_criteria else "")
            )
        self.log.close()
        return StageResult("complete", criteria_passed=passed, results_path=self.paths.results)

    def _best_so_far(self) -> Path:
        """best_running/ of this run; best/ when a crash came after the swap; else the current weights."""
        for candidate in (self.paths.best_running, self.paths.best):
            if is_complete_policy_dir(candidate) and (candidate != self.paths.best or self.run_id is None):
                return candidate
        self.log.echo("⚠️  no validation gave a finite loss; the final weights become best/")
        self._save(self.paths.best_running, self.state.epoch)
        return self.paths.best_running

    def _load_weights(self, policy_dir: Path) -> None:
        from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

        if self.training.adapters is not None:
            return load_active_weights(self.training.adapters, policy_dir)
        SmolVLAPolicy._load_as_safetensor(self.policy, str(policy_dir / MODEL_FILE), str(self.device), strict=True)

    def _loop_seconds(self) -> float:
        return self.state.seconds_training + self.state.seconds_validating + self.state.seconds_checkpointing

    def _timings(self) -> dict[str, float]:
        """Where the stage's wall time went; the parts add up to ``total`` (``other``: logging, set-up checks)."""
        parts = {
            **self.phase_seconds,
            "training": self.state.seconds_training,
            "validation": self.state.seconds_validating,
            "checkpointing": self.state.seconds_checkpointing,
        }
        total = time.perf_counter() - self.started + self.loop_seconds_before_resume
        return {**parts, "other": max(total - sum(parts.values()), 0.0), "total": total}

    def _publish(self, losses, seen, criteria, verdicts) -> dict[str, float]:
        """Rank 0: best/ from best_running/, the results files, and the clean-up of the run's markers; the timings."""
        started = time.perf_counter()
        if self.paths.best_running.is_dir():
            write_dir_atomically(self.paths.best, lambda tmp: _copy_tree(self.paths.best_running, tmp))
        self.state.seconds_checkpointing += time.perf_counter() - started
        self._warn_stale_later_stages()
        timings = self._timings()
        write_json_atomically(self.paths.results, stage_record(self, losses, seen, criteria, verdicts, timings))
        shutil.rmtree(self.paths.best_running, ignore_errors=True)
        self.paths.retraining_marker.unlink(missing_ok=True)
        write_curriculum_results(self.cfg, self.paths.run_root)
        return timings


def _rank_device(device: torch.device, dist: DistContext) -> torch.device:
    """One GPU per process under accelerate launch."""
    if dist.enabled and device.type == "cuda":
        return torch.device("cuda", dist.local_rank)
    return device


def _copy_tree(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, dirs_exist_ok=True)


def format_timings(timings: dict[str, float]) -> str:
    """One line: the stage's wall time and its parts."""
    parts = ", ".join(f"{name.replace('_', ' ')} {seconds:.1f}" for name, seconds in timings.items() if name != "total")
    return f"Stage time {timings['total']:.1f} s: {parts}"
