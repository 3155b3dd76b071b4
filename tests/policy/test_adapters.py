"""LoRA adapters on the tiny SmolVLA (policy.peft): config errors, what trains, merged weights, saved bank."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from kuavo_train.errors import KuavoError
from kuavo_train.layout import ADAPTER_TABLE_FILE, ADAPTERS_DIR, MODEL_FILE
from kuavo_train.policy.adapters import (
    adapter_bank,
    attach_adapters,
    base_state_dict,
    check_start_fits_mode,
    load_active_weights,
    save_adapters,
)
from kuavo_train.policy.factory import count_parameters, load_policy
from tests.policy.test_factory import SCHEMA


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("policy.peft.rank=0", "policy.peft.rank must be >= 1, got 0"),
        ("policy.peft.rank=-4", "policy.peft.rank must be >= 1, got -4"),
        ("policy.peft.mode=lora", "policy.peft.mode must be off, merge or per_task, got 'lora'"),
        ("policy.peft.alpha=0", "policy.peft.alpha must be > 0"),
        ("policy.peft.dropout=1.0", "policy.peft.dropout must be in [0, 1)"),
        ("policy.peft.targets='(q_proj'", "policy.peft.targets is not a valid regex"),
    ],
)
def test_bad_peft_settings_are_one_line_config_errors(demo_env, override, message):
    with pytest.raises(KuavoError) as info:
        demo_env.config(extra=[override])
    assert message in str(info.value) and "\n" not in str(info.value)


def _policy(demo_env, *extra):
    cfg = demo_env.config(extra=["policy.peft.mode=merge", *extra])
    return cfg, load_policy(cfg.policy, SCHEMA, None, torch.device("cpu"))


def _perturb(adapters, seed: int = 0) -> None:
    """Non-zero LoRA B weights (peft starts them at 0: an untrained adapter changes nothing)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in adapters.policy.named_parameters():
            if f"lora_B.{adapters.active}." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)


def _outputs(policy, seed: int = 0) -> torch.Tensor:
    """The flow-matching model's velocity on a fixed random input (what training and inference evaluate)."""
    generator = torch.Generator().manual_seed(seed)
    model = policy.model
    images = [torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1]
    masks = [torch.ones(1, dtype=torch.bool)]
    tokens = torch.randint(0, 100, (1, 8), generator=generator)
    token_mask = torch.ones(1, 8, dtype=torch.bool)
    state = torch.randn(1, policy.config.max_state_dim, generator=generator)
    actions = torch.randn(1, policy.config.chunk_size, policy.config.max_action_dim, generator=generator)
    noise = torch.randn(actions.shape, generator=generator)
    time = torch.full((1,), 0.4)
    with torch.no_grad():
        return model.forward(images, masks, tokens, token_mask, state, actions, noise=noise, time=time)


def test_only_the_stage_adapter_trains_on_lerobots_default_targets(demo_env):
    cfg, policy = _policy(demo_env)
    total = count_parameters(policy).total
    adapters = attach_adapters(policy, cfg.policy.peft, 1, "task1_a", None, cached_vision=False)
    trainable = [name for name, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A.task1_a." in n or ".lora_B.task1_a." in n for n in trainable)
    targeted = set(adapters.model.targeted_module_names)
    assert any(".lm_expert." in n and n.endswith("q_proj") for n in targeted)
    assert {"model.state_proj", "model.action_in_proj", "model.action_out_proj"} <= targeted
    assert not any(".vision_model." in n or ".text_model." in n for n in targeted)  # no VLM layer adapted
    assert count_parameters(policy).trainable < 0.1 * total


def test_targets_matching_nothing_or_cached_vision_are_errors(demo_env):
    cfg, policy = _policy(demo_env, "policy.peft.targets=no_such_module")
    with pytest.raises(KuavoError, match="matches no module"):
        attach_adapters(policy, cfg.policy.peft, 1, "task1_a", None, cached_vision=False)
    cfg, policy = _policy(demo_env, r"policy.peft.targets='.*vision_model.*\.q_proj'")
    with pytest.raises(KuavoError, match="data.feature_cache=off"):
        attach_adapters(policy, cfg.policy.peft, 1, "task1_a", None, cached_vision=True)


def test_merged_weights_give_the_adapted_models_outputs_without_touching_it(demo_env):
    cfg, policy = _policy(demo_env)
    before = _outputs(policy)
    adapters = attach_adapters(policy, cfg.policy.peft, 1, "task1_a", None, cached_vision=False)
    _perturb(adapters)
    adapted = _outputs(policy)
    assert not torch.allclose(adapted, before)
    live = {k: v.clone() for k, v in policy.state_dict().items()}
    merged = base_state_dict(adapters)
    assert all(torch.equal(live[k], v) for k, v in policy.state_dict().items())  # computed aside
    assert not any("lora_" in k or "base_layer" in k for k in merged)

    _, plain = _policy(demo_env)
    plain.load_state_dict(merged, strict=True)
    assert torch.allclose(_outputs(plain), adapted, atol=1e-5)


def test_per_task_bank_round_trip_keeps_the_base_and_routes(demo_env, tmp_path):
    cfg, policy = _policy(demo_env, "policy.peft.mode=per_task")
    base = {k: v.clone() for k, v in policy.state_dict().items()}
    stage1 = attach_adapters(policy, cfg.policy.peft, 1, "task1_a", None, cached_vision=False)
    _perturb(stage1, seed=1)
    first = tmp_path / "stage1"
    first.mkdir()
    save_adapters(stage1, first)
    assert load_file(first / MODEL_FILE).keys() == base.keys()
    assert all(torch.equal(load_file(first / MODEL_FILE)[k], v) for k, v in base.items())  # the untouched base
    assert json.loads((first / ADAPTER_TABLE_FILE).read_text()) == {"adapters": {"1": "task1_a"}}

    # Stage 2 from stage 1's dir: task 1's adapter frozen, its own trainable.
    _, policy2 = _policy(demo_env, "policy.peft.mode=per_task")
    policy2.load_state_dict(load_file(first / MODEL_FILE))
    stage2 = attach_adapters(policy2, cfg.policy.peft, 4, "task4_d", first, cached_vision=False)
    assert stage2.task_adapters == {1: "task1_a", 4: "task4_d"}
    trainable = {n for n, p in policy2.named_parameters() if p.requires_grad}
    assert trainable and all(".task4_d." in n for n in trainable)
    with stage2.routed(1):
        routed_task1 = _outputs(policy2)
    assert torch.allclose(routed_task1, _outputs(policy), atol=1e-6)  # task 1 through its own adapter
    assert {n for n, p in policy2.named_parameters() if p.requires_grad} == trainable  # restored after routing

    # The wrapper's side: a fresh plain policy + the bank.
    _, plain = _policy(demo_env, "policy.peft.mode=per_task")
    plain.load_state_dict(load_file(first / MODEL_FILE))
    bank = adapter_bank(plain, first)
    bank.route(1)
    assert torch.allclose(_outputs(plain), _outputs(policy), atol=1e-6)
    bank.route(4)  # a task without an adapter runs on the base
    _, reference = _policy(demo_env)
    reference.load_state_dict(base)
    assert torch.allclose(_outputs(plain), _outputs(reference), atol=1e-6)
    assert not torch.allclose(_outputs(plain), routed_task1)


def test_missing_or_corrupt_adapter_files_are_one_line_errors(demo_env, tmp_path):
    cfg, policy = _policy(demo_env, "policy.peft.mode=per_task")
    adapters = attach_adapters(policy, cfg.policy.peft, 1, "task1_a", None, cached_vision=False)
    folder = tmp_path / "dir"
    folder.mkdir()
    save_adapters(adapters, folder)
    weights = folder / ADAPTERS_DIR / "task1_a" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    for attempt in (
        lambda: load_active_weights(adapters, folder),
        lambda: attach_adapters(_policy(demo_env)[1], cfg.policy.peft, 4, "task4_d", folder, cached_vision=False),
        lambda: adapter_bank(_policy(demo_env)[1], folder),
    ):
        with pytest.raises(KuavoError) as info:
            attempt()
        assert "adapter_model.safetensors" in str(info.value) or "task1_a" in str(info.value)
        assert "\n" not in str(info.value)
    weights.unlink()
    with pytest.raises(KuavoError, match="is missing"):
        adapter_bank(_policy(demo_env)[1], folder)


def test_a_per_task_bank_does_not_continue_as_full_weights(tmp_path):
    (tmp_path / ADAPTER_TABLE_FILE).write_text(json.dumps({"adapters": {"1": "task1_a"}}))
    for mode in ("off", "merge"):
        with pytest.raises(KuavoError, match="policy.peft.mode=per_task"):
            check_start_fits_mode(tmp_path, mode)
    check_start_fits_mode(tmp_path, "per_task")
