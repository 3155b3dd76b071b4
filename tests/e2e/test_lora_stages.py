"""The four-stage demo curriculum trained with LoRA stages (policy.peft.mode merge and per_task), end to end:
chaining, what each way keeps, the wrapper's routing by instruction, resume and damaged adapters."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from kuavo_train.errors import KuavoError
from kuavo_train.files import file_sha256, weights_sha256
from kuavo_train.layout import ADAPTER_TABLE_FILE, ADAPTERS_DIR, MODEL_FILE
from kuavo_train.training.loop import TEST_KILL_ENV
from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper
from tests.conftest import FAST_STAGE, TASK_FILES, copy_run, run_seed_command, train_stages

ADAPTER_FILE = "adapter_model.safetensors"
NAMES = {1: "task1_moving_grasp", 2: "task2_weighing", 3: "task3_placement", 4: "task4_sorting"}


@pytest.fixture(scope="module")
def per_task_run(demo_env, tmp_path_factory):
    return train_stages(
        demo_env, tmp_path_factory.mktemp("lora") / "run", extra=[*FAST_STAGE, "policy.peft.mode=per_task"]
    )


@pytest.fixture(scope="module")
def merge_run(demo_env, tmp_path_factory):
    return train_stages(
        demo_env, tmp_path_factory.mktemp("lora") / "run", extra=[*FAST_STAGE, "policy.peft.mode=merge"]
    )


def _results(run, stage: int) -> dict:
    return json.loads(run.stage(stage).results.read_text())


def test_per_task_keeps_the_base_and_every_earlier_adapter_untouched(per_task_run):
    base = file_sha256(per_task_run.stage(1).best / MODEL_FILE)
    for stage in (2, 3, 4):
        best = per_task_run.stage(stage).best
        assert file_sha256(best / MODEL_FILE) == base, f"stage {stage} changed the shared base"
        parent = _results(per_task_run, stage)["parent_checkpoint"]["model_sha256"]
        assert parent == weights_sha256(per_task_run.stage(stage - 1).best) != base  # the adapters count too
        table = json.loads((best / ADAPTER_TABLE_FILE).read_text())
        assert table == {"adapters": {str(t): NAMES[t] for t in range(1, stage + 1)}}
        for earlier in range(1, stage):
            own = per_task_run.stage(earlier).best / ADAPTERS_DIR / NAMES[earlier] / ADAPTER_FILE
            assert file_sha256(best / ADAPTERS_DIR / NAMES[earlier] / ADAPTER_FILE) == file_sha256(own)
    for stage in (1, 2, 3, 4):
        results = _results(per_task_run, stage)
        assert results["optimizer_steps"] == 2
        assert 0 < results["parameters"]["trainable"] < 0.1 * results["parameters"]["total"]
        adapter = load_file(per_task_run.stage(stage).best / ADAPTERS_DIR / NAMES[stage] / ADAPTER_FILE)
        assert any(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k), f"stage {stage} did not train"


def test_per_task_routing_means_no_forgetting_in_the_loss_matrix(per_task_run):
    """Validation routes each task to its adapter: an earlier task's loss stays what its own stage measured."""
    final = _results(per_task_run, 4)["final_validation"]
    for task in (1, 2, 3):
        assert final[str(task)] == _results(per_task_run, task)["final_validation"][str(task)]


def test_wrapper_routes_each_instruction_to_its_tasks_adapter(per_task_run):
    wrapper = SmolVLAPolicyWrapper.from_pretrained(per_task_run.stage(4).best, device="cpu")
    noise = torch.randn(wrapper.noise_shape(1), generator=torch.Generator().manual_seed(0))
    actions = {}
    for task in wrapper.schema.tasks:
        obs = wrapper.make_example_observation(task.task_id, seed=0)
        obs["task"] = "  " + obs["task"].upper().replace(" ", "   ") + " "  # case and spaces do not matter
        actions[task.task_id] = wrapper.predict_action_chunk(obs, noise=noise)
        assert wrapper.active_adapter == NAMES[task.task_id]
    # The chosen adapter is what acts: task 1's observation through task 2's adapter acts otherwise.
    wrapper.adapters.task_adapters[1] = NAMES[2]
    obs = wrapper.make_example_observation(1, seed=0)
    assert not torch.allclose(wrapper.predict_action_chunk(obs, noise=noise), actions[1])
    assert wrapper.active_adapter == NAMES[2]
    with pytest.raises(KuavoError, match="not a trained instruction"):
        wrapper.select_action({**obs, "task": "dance on the table"})
    batch = wrapper.make_example_observation(1, batch=True, batch_size=2, seed=0)
    batch["task"] = [wrapper.schema.task(1).instruction, wrapper.schema.task(3).instruction]
    with pytest.raises(KuavoError, match="different LoRA adapters"):
        wrapper.select_action(batch)


def test_merge_chains_plain_checkpoints_that_changed_only_adapted_weights(merge_run):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    for stage in (1, 2, 3, 4):
        best = merge_run.stage(stage).best
        assert not (best / ADAPTER_TABLE_FILE).exists()
        weights = load_file(best / MODEL_FILE)
        initial = merge_run.initial_weights[stage]
        assert weights.keys() == initial.keys()  # lerobot's own key names, no LoRA key
        changed = {k for k, t in weights.items() if not torch.equal(initial[k], t)}
        assert changed, f"stage {stage} merged nothing"
        assert all(
            k.endswith(".weight") and ("lm_expert" in k or ".action_" in k or "state_proj" in k) for k in changed
        )
        if stage > 1:
            assert str(merge_run.start_paths[stage]) == str(merge_run.stage(stage - 1).best)
    policy = SmolVLAPolicy.from_pretrained(merge_run.stage(4).best)  # plain lerobot loads best/
    assert (
        sum(p.numel() for p in policy.parameters())
        == _results(merge_run, 4)["parameters"]["total"] - _results(merge_run, 4)["parameters"]["trainable"]
    )


def test_a_corrupt_adapter_of_the_previous_stage_is_a_one_line_error(demo_env, per_task_run, tmp_path):
    root = copy_run(per_task_run.root, tmp_path)
    damaged = root / TASK_FILES[2].split("/")[1] / "best" / ADAPTERS_DIR / NAMES[1] / ADAPTER_FILE
    damaged.write_bytes(damaged.read_bytes()[:64])
    result = run_seed_command(
        demo_env, root, TASK_FILES[3], extra=[*FAST_STAGE, "policy.peft.mode=per_task", "training.overwrite=true"]
    )
    assert result.returncode != 0
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"{ADAPTERS_DIR}/{NAMES[1]}" in error[0], result.stderr[-2000:]
    full = run_seed_command(demo_env, root, TASK_FILES[3], extra=[*FAST_STAGE, "training.overwrite=true"])
    assert full.returncode != 0 and "policy.peft.mode=per_task" in full.stderr


def test_an_interrupted_lora_stage_resumes_to_the_same_adapter(demo_env, tmp_path):
    extra = [
        "training.epochs_override=2",
        "training.max_steps_per_epoch=3",
        "training.batch_size=2",
        "training.max_validation_samples=2",
        "policy.peft.mode=per_task",
    ]
    reference = run_seed_command(demo_env, tmp_path / "reference", extra=extra)
    assert reference.returncode == 0, reference.stderr[-2000:]
    env = {**os.environ, TEST_KILL_ENV: "4:SIGTERM"}  # mid epoch 2
    killed = run_seed_command(demo_env, tmp_path / "run", extra=extra, env=env)
    assert killed.returncode == 130, killed.stderr[-2000:]
    rerun = run_seed_command(demo_env, tmp_path / "run", extra=extra)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Resuming from epoch 1 step 4" in rerun.stdout
    for name in ("best", "last"):
        ours = load_file(tmp_path / "run" / NAMES[1] / name / ADAPTERS_DIR / NAMES[1] / ADAPTER_FILE)
        theirs = load_file(tmp_path / "reference" / NAMES[1] / name / ADAPTERS_DIR / NAMES[1] / ADAPTER_FILE)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), f"{name}/ differs after the resume"


def test_plain_lerobot_loads_the_base_plus_one_adapter_as_docs_peft_says(per_task_run):
    """docs/peft.md: SmolVLAPolicy.from_pretrained(best) + peft's PeftModel.from_pretrained(adapters/<task>)."""
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from peft import PeftModel

    best = per_task_run.stage(4).best
    policy = PeftModel.from_pretrained(SmolVLAPolicy.from_pretrained(best), best / ADAPTERS_DIR / NAMES[2])
    saved = load_file(best / ADAPTERS_DIR / NAMES[2] / ADAPTER_FILE)
    loaded = {k: v for k, v in policy.state_dict().items() if "lora_B" in k}
    assert loaded and any(v.abs().sum() > 0 for v in loaded.values())  # the trained values, not a fresh B = 0
    assert sorted(float(v.sum()) for v in loaded.values()) == pytest.approx(
        sorted(float(v.sum()) for k, v in saved.items() if "lora_B" in k)
    )
    merged = policy.merge_and_unload()  # a plain SmolVLAPolicy for lerobot-eval / lerobot-record
    assert isinstance(merged, SmolVLAPolicy) and not any("lora_" in k for k in merged.state_dict())


def test_export_of_a_per_task_model_carries_its_adapters(per_task_run, tmp_path):
    from kuavo_train.deploy.export import export_policy

    best = per_task_run.stage(4).best
    export_policy(best, tmp_path / "export")
    source = SmolVLAPolicyWrapper.from_pretrained(best, device="cpu")
    exported = SmolVLAPolicyWrapper.from_pretrained(tmp_path / "export", device="cpu")
    noise = torch.randn(source.noise_shape(1), generator=torch.Generator().manual_seed(1))
    for task in source.schema.tasks:
        obs = source.make_example_observation(task.task_id, seed=1)
        ours = exported.predict_action_chunk(obs, noise=noise)
        assert torch.equal(ours, source.predict_action_chunk(obs, noise=noise))
        assert exported.active_adapter == NAMES[task.task_id]
    readme = (tmp_path / "export" / "README.txt").read_text()
    assert "one LoRA adapter per task" in readme and f"adapters/{NAMES[4]}" in readme


def test_a_resume_must_match_the_adapter_settings_and_start(demo_env, per_task_run, tmp_path):
    """last/ of a LoRA stage holds only its adapter: a resume with another rank, mode or start weights is refused."""
    root = copy_run(per_task_run.root, tmp_path)
    stage2 = root / NAMES[2]
    (stage2 / "training_results.json").unlink()  # as if stage 2 had been cut short after its last/
    shutil.rmtree(stage2 / "best")
    extra = [*FAST_STAGE, "policy.peft.mode=per_task"]
    for change, message in (
        (["policy.peft.rank=8"], "policy.peft"),
        (["policy.peft.mode=merge"], "policy.peft"),
    ):
        result = run_seed_command(demo_env, root, TASK_FILES[1], extra=[*extra, *change])
        assert result.returncode != 0 and message in result.stderr, result.stderr[-1500:]
    stage1_weights = root / NAMES[1] / "best" / ADAPTERS_DIR / NAMES[1] / ADAPTER_FILE
    weights = load_file(stage1_weights)
    save_file({k: v + 1 for k, v in weights.items()}, stage1_weights)  # stage 1 retrained since
    result = run_seed_command(demo_env, root, TASK_FILES[1], extra=extra)
    assert result.returncode != 0 and "other start weights" in result.stderr, result.stderr[-1500:]
