"""The tiny SmolVLM backbone: files, determinism, caching, CLI, and a SmolVLA policy built on it (CPU)."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from kuavo_train.demo import tiny_backbone as tb
from kuavo_train.errors import KuavoError

CAMERAS = ("observation.images.head_cam_h", "observation.images.wrist_cam_l", "observation.images.wrist_cam_r")
IMAGE_SHAPE = (3, 48, 64)
STATE_DIM, ACTION_DIM, CHUNK = 16, 20, 10
INSTRUCTIONS = ["Pick up the bottle and place it in the box", "Move to the rack and pick up the workpiece"]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tb.build_tiny_backbone(tmp_path_factory.mktemp("tiny") / "backbone", instructions=INSTRUCTIONS)


def _file_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_dir_loads_with_auto_classes(backbone: Path) -> None:
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    assert all((backbone / name).is_file() for name in tb.REQUIRED_FILES)
    config = AutoConfig.from_pretrained(backbone)
    tokenizer = AutoProcessor.from_pretrained(backbone).tokenizer
    assert AutoTokenizer.from_pretrained(backbone).get_vocab() == tokenizer.get_vocab()
    assert config.model_type == "smolvlm"
    assert config.text_config.vocab_size == len(tokenizer) <= tb.VOCAB_SIZE
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<image>")
    assert tokenizer.fake_image_token_id != tokenizer.global_image_token_id
    assert tokenizer.unk_token_id not in tokenizer(INSTRUCTIONS[0] + " zebra 42 ü\n")["input_ids"]
    # Instruction words were learnt as merges, so an instruction is far fewer tokens than bytes.
    assert len(tokenizer(INSTRUCTIONS[0])["input_ids"]) < len(INSTRUCTIONS[0]) / 3


def test_same_args_give_identical_files(backbone: Path, tmp_path: Path) -> None:
    again = tb.build_tiny_backbone(tmp_path / "again", instructions=INSTRUCTIONS)
    other_seed = tb.build_tiny_backbone(tmp_path / "seed1", seed=1, instructions=INSTRUCTIONS)
    assert _file_bytes(again) == _file_bytes(backbone)
    assert (other_seed / "model.safetensors").read_bytes() != (backbone / "model.safetensors").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging dirs left behind


def test_up_to_date_dir_is_reused_and_stale_one_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tb.build_tiny_backbone(tmp_path / "bb", image_size=32, num_text_layers=2)
    calls: list[Path] = []
    real_write = tb._write_backbone
    monkeypatch.setattr(tb, "_write_backbone", lambda path, spec: (calls.append(path), real_write(path, spec)))

    assert tb.build_tiny_backbone(out, image_size=32, num_text_layers=2) == out
    assert calls == []
    tb.build_tiny_backbone(out, seed=3, image_size=32, num_text_layers=2)
    assert len(calls) == 1
    assert json.loads((out / tb.MANIFEST_NAME).read_text())["spec"]["seed"] == 3


def test_refuses_foreign_dir_and_bad_image_size(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a backbone")
    with pytest.raises(KuavoError, match="not a tiny backbone"):
        tb.build_tiny_backbone(tmp_path)
    with pytest.raises(KuavoError, match="image_size"):
        tb.build_tiny_backbone(tmp_path / "bb", image_size=60)


def test_cli_reads_task_instructions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "b.yaml").write_text('id: 2\nlanguage_instruction: "Weigh the package"\n')
    (tasks / "a.yaml").write_text('id: 1\nlanguage_instruction: "Grasp the cube"\n')
    out = tmp_path / "bb"

    argv = ["--out", str(out), "--seed", "5", "--image-size", "32", "--instructions-from", str(tasks)]
    assert tb.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
    spec = json.loads((out / tb.MANIFEST_NAME).read_text())["spec"]
    assert spec["instructions"] == ["Grasp the cube", "Weigh the package"]
    assert (spec["seed"], spec["image_size"]) == (5, 32)
    assert tb.main(["--out", str(out), "--instructions-from", str(tmp_path / "missing")]) == 2


def _policy_and_processors(backbone: Path, *, load_vlm_weights: bool = False) -> tuple:
    """SmolVLAPolicy on the tiny backbone: 3 cameras (3, 48, 64), state (16,), action chunk (10, 20)."""
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.smolvla import SmolVLAConfig, SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    inputs = {key: PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE_SHAPE) for key in CAMERAS}
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,))
    config = SmolVLAConfig(
        vlm_model_name=str(backbone),
        load_vlm_weights=load_vlm_weights,
        num_vlm_layers=4,
        resize_imgs_with_padding=(64, 64),
        input_features=inputs,
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))},
        chunk_size=CHUNK,
        n_action_steps=CHUNK,
        train_expert_only=False,
        device="cpu",
        push_to_hub=False,
    )
    stats = {
        "observation.state": {"mean": torch.zeros(STATE_DIM), "std": torch.ones(STATE_DIM)},
        "action": {"mean": torch.zeros(ACTION_DIM), "std": torch.ones(ACTION_DIM)},
    }
    pre, post = make_smolvla_pre_post_processors(config, stats)
    return SmolVLAPolicy(config), pre, post


def _raw_batch(with_action: bool) -> dict:
    """Batch of 2 un-normalised samples: images (2, 3, 48, 64) in [0, 1], state (2, 16), action (2, 10, 20)."""
    gen = torch.Generator().manual_seed(0)
    batch: dict = {key: torch.rand(2, *IMAGE_SHAPE, generator=gen) for key in CAMERAS}
    batch["observation.state"] = torch.randn(2, STATE_DIM, generator=gen)
    batch["task"] = INSTRUCTIONS
    if with_action:
        batch["action"] = torch.randn(2, CHUNK, ACTION_DIM, generator=gen)
    return batch


def test_smolvla_trains_and_acts_on_tiny_backbone(backbone: Path) -> None:
    torch.manual_seed(0)
    policy, pre, post = _policy_and_processors(backbone)
    policy.train()

    loss, _ = policy.forward(pre(_raw_batch(with_action=True)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in policy.model.vlm_with_expert.vlm.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)

    action = post(policy.select_action(pre(_raw_batch(with_action=False))))
    assert action.shape == (2, ACTION_DIM) and torch.isfinite(action).all()


def test_smolvla_loads_backbone_weights(backbone: Path) -> None:
    from safetensors.torch import load_file

    policy, pre, _ = _policy_and_processors(backbone, load_vlm_weights=True)
    saved = load_file(backbone / "model.safetensors")
    loaded = policy.model.vlm_with_expert.vlm.state_dict()
    assert set(loaded) <= set(saved)
    assert all(torch.equal(loaded[k], saved[k].to(loaded[k].dtype)) for k in loaded)

    loss, _ = policy.forward(pre(_raw_batch(with_action=True)))
    assert torch.isfinite(loss)
