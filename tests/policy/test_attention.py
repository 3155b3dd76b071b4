"""SDPA attention (kuavo_train.policy.attention) gives eager's results: losses, gradients, action chunks."""

import pytest
import torch

from kuavo_train.errors import KuavoError
from kuavo_train.policy.attention import attention_kind, use_attention
from kuavo_train.policy.factory import load_policy, make_processors
from kuavo_train.policy.loss import fixed_noise_and_time, per_sample_loss
from tests.policy.test_factory import SCHEMA, UNIT_STATS


def batch_of(chunk: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "observation.images.head_cam_h": torch.rand(3, 3, 24, 32, generator=generator),
        "observation.state": torch.randn(3, 16, generator=generator),
        "action": torch.randn(3, chunk, 20, generator=generator),
        "action_is_pad": torch.zeros(3, chunk, dtype=torch.bool),
        # different lengths: padded language tokens, so some queries have no allowed key at all
        "task": ["do a", "do d now, carefully and slowly", "do a"],
    }


@pytest.fixture(scope="module")
def tiny(demo_env):
    cfg = demo_env.config()
    torch.manual_seed(0)
    policy = load_policy(cfg.policy, SCHEMA, None, torch.device("cpu"))
    preprocessor, _ = make_processors(policy, UNIT_STATS)
    return cfg, policy, preprocessor


def loss_and_grads(policy, preprocessor, kind: str):
    use_attention(policy, kind)
    policy.train()
    policy.zero_grad(set_to_none=True)
    chunk = policy.config.chunk_size
    mask = torch.zeros(3, 20, dtype=torch.bool)
    mask[:, :16] = True
    noise, time = fixed_noise_and_time(
        torch.tensor([1, 2, 3]), chunk, policy.config.max_action_dim, torch.device("cpu")
    )
    loss = per_sample_loss(policy, preprocessor(batch_of(chunk)), mask, noise=noise, time=time)
    loss.mean().backward()
    grads = {name: p.grad.clone() for name, p in policy.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def test_load_policy_runs_sdpa_by_default_and_eager_on_request(demo_env):
    cfg = demo_env.config()
    assert cfg.policy.attention == "sdpa"
    assert attention_kind(load_policy(cfg.policy, SCHEMA, None, torch.device("cpu"))) == "sdpa"
    cfg.policy.attention = "eager"
    assert attention_kind(load_policy(cfg.policy, SCHEMA, None, torch.device("cpu"))) == "eager"


def test_sdpa_training_loss_and_gradients_equal_eager(tiny):
    _, policy, preprocessor = tiny
    eager_loss, eager_grads = loss_and_grads(policy, preprocessor, "eager")
    sdpa_loss, sdpa_grads = loss_and_grads(policy, preprocessor, "sdpa")
    torch.testing.assert_close(sdpa_loss, eager_loss, rtol=1e-5, atol=1e-6)
    assert sdpa_grads.keys() == eager_grads.keys() and len(sdpa_grads) > 10
    for name, grad in eager_grads.items():
        torch.testing.assert_close(sdpa_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_sdpa_action_chunk_equals_eager_with_the_kv_cache(tiny):
    _, policy, preprocessor = tiny
    chunk = policy.config.chunk_size
    observation = {k: v for k, v in batch_of(chunk).items() if k not in ("action", "action_is_pad")}
    noise = torch.randn(3, chunk, policy.config.max_action_dim, generator=torch.Generator().manual_seed(1))
    chunks = {}
    for kind in ("eager", "sdpa"):
        use_attention(policy, kind)
        policy.reset()
        with torch.no_grad():
            chunks[kind] = policy.predict_action_chunk(preprocessor(dict(observation)), noise=noise.clone())
    torch.testing.assert_close(chunks["sdpa"], chunks["eager"], rtol=1e-4, atol=1e-5)


def test_sdpa_changes_no_weight_or_saved_file(tiny, tmp_path):
    _, policy, _ = tiny
    use_attention(policy, "eager")
    policy.save_pretrained(tmp_path / "eager")
    use_attention(policy, "sdpa")
    policy.save_pretrained(tmp_path / "sdpa")
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "sdpa" / name).read_bytes() == (tmp_path / "eager" / name).read_bytes()


def test_unknown_attention_is_a_config_error(demo_env):
    with pytest.raises(KuavoError, match="policy.attention"):
        demo_env.config(extra=["policy.attention=flash"])


def test_wrapper_runs_sdpa_and_gives_eager_actions(seed_stage1):
    from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper

    best = seed_stage1[0] / "task1_moving_grasp" / "best"
    sdpa = SmolVLAPolicyWrapper.from_pretrained(best, device="cpu")
    eager = SmolVLAPolicyWrapper.from_pretrained(best, device="cpu", attention="eager")
    assert (attention_kind(sdpa.policy), attention_kind(eager.policy)) == ("sdpa", "eager")
    observation = sdpa.make_example_observation(1, seed=0)
    noise = torch.randn(
        1, sdpa.chunk_size, sdpa.policy.config.max_action_dim, generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(
        sdpa.predict_action_chunk(observation, noise=noise), eager.predict_action_chunk(observation, noise=noise)
    )
    with pytest.raises(KuavoError, match="attention='flash'"):
        SmolVLAPolicyWrapper.from_pretrained(best, device="cpu", attention="flash")
