import numpy as np
import pytest
import torch

from kuavo_train.data.schema import FeatureSchema, TaskFeatures
from kuavo_train.errors import KuavoError
from kuavo_train.policy.factory import load_policy

SCHEMA = FeatureSchema(
    cameras={"observation.images.head_cam_h": (3, 24, 32)},
    state_dim=16,
    action_dim=20,
    fps=10.0,
    tasks=(TaskFeatures(1, "a", "do a", 16, 16), TaskFeatures(4, "d", "do d", 16, 20)),
)
# Normalization stats of SCHEMA's state and action that leave values as they are (mean 0, std 1).
UNIT_STATS = {
    key: {
        "mean": np.zeros(d, np.float32),
        "std": np.ones(d, np.float32),
        "min": -np.ones(d, np.float32),
        "max": np.ones(d, np.float32),
    }
    for key, d in (("observation.state", 16), ("action", 20))
}


def test_unreachable_hub_id_gives_a_clear_error(demo_env, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    cfg = demo_env.config(extra=["policy.pretrained_path=lerobot/smolvla_base"])
    with pytest.raises(KuavoError) as info:
        load_policy(cfg.policy, SCHEMA, cfg.policy.pretrained_path, torch.device("cpu"))
    message = str(info.value)
    assert "not in the Hugging Face cache" in message and "policy.pretrained_path" in message


def test_freezing_lower_layers_and_counts(demo_env):
    cfg = demo_env.config(extra=["policy.freeze_vlm_layers=2"])
    policy = load_policy(cfg.policy, SCHEMA, None, torch.device("cpu"))
    layers = policy.model.vlm_with_expert.get_vlm_model().text_model.layers
    assert not any(p.requires_grad for layer in layers[:2] for p in layer.parameters())
    assert all(p.requires_grad for p in layers[2].parameters())
    assert not any(p.requires_grad for p in policy.model.vlm_with_expert.get_vlm_model().vision_model.parameters())
    cfg.policy.train_expert_only = True
    expert_only = load_policy(cfg.policy, SCHEMA, None, torch.device("cpu"))
    assert not any(p.requires_grad for p in expert_only.model.vlm_with_expert.vlm.parameters())


def test_padded_action_dims_never_enter_the_loss(demo_env):
    from kuavo_train.policy.factory import make_processors
    from kuavo_train.policy.loss import fixed_noise_and_time, per_sample_loss

    cfg = demo_env.config()
    policy = load_policy(cfg.policy, SCHEMA, None, torch.device("cpu"))
    pre, _ = make_processors(policy, UNIT_STATS)
    T = cfg.policy.chunk_size
    batch = {
        "observation.images.head_cam_h": torch.rand(2, 3, 24, 32),
        "observation.state": torch.randn(2, 16),
        "action": torch.randn(2, T, 20),
        "action_is_pad": torch.zeros(2, T, dtype=torch.bool),
        "task": ["do a", "do a"],
    }
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[:, :16] = True
    noise, time = fixed_noise_and_time(torch.tensor([1, 2]), T, policy.config.max_action_dim, torch.device("cpu"))
    policy.eval()
    with torch.no_grad():
        first = per_sample_loss(policy, pre(dict(batch)), mask, noise=noise, time=time)
        batch["action"][:, :, 16:] = 100.0  # garbage in the padded walking dims
        second = per_sample_loss(policy, pre(dict(batch)), mask, noise=noise, time=time)
    torch.testing.assert_close(first, second)
