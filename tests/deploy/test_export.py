"""kuavo-train export: a self-contained folder that loads offline without the run dir, the VLM folder or the network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from kuavo_train.deploy.export import (
    EXPORT_META_FILE,
    README_FILE,
    VLM_DIR,
    _write_new_dir,
    export_main,
    export_policy,
)
from kuavo_train.errors import KuavoError
from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper
from tests.conftest import REPO_ROOT

DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
STAGE_BEST = Path("task1_moving_grasp") / "best"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def copy_run(seed_stage1, demo_env, root: Path) -> tuple[Path, Path]:
    """A copy of the trained best/ and of the tiny VLM, the copy's config pointing at the copied VLM
    (as on another machine); the shared fixture dirs are never touched."""
    best = shutil.copytree(seed_stage1[0] / STAGE_BEST, root / "run" / "best")
    vlm = shutil.copytree(demo_env.root / "tiny_smolvlm", root / "tiny_vlm")
    point_at_vlm(best, str(vlm))
    return best, vlm


def point_at_vlm(best: Path, name: str) -> None:
    config = json.loads((best / "config.json").read_text())
    config["vlm_model_name"] = name
    (best / "config.json").write_text(json.dumps(config))
    pipeline = json.loads((best / "policy_preprocessor.json").read_text())
    for step in pipeline["steps"]:
        if step["registry_name"] == "tokenizer_processor":
            step["config"]["tokenizer_name"] = name
    (best / "policy_preprocessor.json").write_text(json.dumps(pipeline))


def chunk_of(wrapper: SmolVLAPolicyWrapper, inputs: dict) -> torch.Tensor:
    return wrapper.predict_action_chunk(inputs["obs"], noise=inputs["noise"])


@pytest.fixture(scope="module")
def exported(seed_stage1, demo_env, tmp_path_factory):
    """An export of a copied run whose run dir and VLM dir are deleted afterwards; also the inputs and
    action chunk of the source checkpoint for comparison (saved to reference.pt)."""
    root = tmp_path_factory.mktemp("deploy")
    best, vlm = copy_run(seed_stage1, demo_env, root)
    source = SmolVLAPolicyWrapper.from_pretrained(best, device="cpu")
    obs = source.make_example_observation(task_id=1, seed=3)
    noise = torch.randn(source.noise_shape(1), generator=torch.Generator().manual_seed(0))
    inputs = {"obs": obs, "noise": noise}
    torch.save({**inputs, "chunk": chunk_of(source, inputs)}, root / "reference.pt")

    out = root / "robot" / "kuavo_task1"
    result = export_policy(best, out)
    shutil.rmtree(best.parent)
    shutil.rmtree(vlm)
    return out, root / "reference.pt", result, [str(best), str(vlm), str(seed_stage1[0]), str(demo_env.root)]


def test_export_layout_has_no_path_back_to_the_training_machine(exported):
    out, _, result, source_paths = exported
    config = json.loads((out / "config.json").read_text())
    assert config["vlm_model_name"] == VLM_DIR and config["load_vlm_weights"] is False
    assert (out / VLM_DIR / "config.json").is_file() and (out / VLM_DIR / "tokenizer.json").is_file()
    assert not list((out / VLM_DIR).glob("*.safetensors")), "the VLM's own weights are never copied"
    for name in (
        "model.safetensors",
        "kuavo_schema.json",
        "kuavo_checkpoint.json",
        "policy_postprocessor.json",
        README_FILE,
        EXPORT_META_FILE,
    ):
        assert (out / name).is_file(), name
    assert not list(out.parent.glob(".*")), "no temp dir left beside the export"
    # Only the provenance files may name the source; nothing that loading reads does.
    for path in out.rglob("*.json"):
        if path.name not in (EXPORT_META_FILE, "kuavo_checkpoint.json"):
            text = path.read_text()
            assert not any(p in text for p in source_paths), path
    meta = json.loads((out / EXPORT_META_FILE).read_text())
    assert set(meta["files"]) >= {"model.safetensors", f"{VLM_DIR}/config.json"}
    assert result.checked and "finite" in result.checked


def test_export_loads_offline_in_a_fresh_process_without_run_or_vlm(exported, tmp_path):
    """Wrapper (same actions as the source checkpoint), README.txt's plain lerobot snippet and the control
    loop of docs/deploy.md, all run as written in one fresh offline process with an empty HF cache."""
    out, reference, _, _ = exported
    readme = (out / README_FILE).read_text()
    wrapper_block, lerobot_block = python_blocks(readme)
    (tmp_path / "readme_wrapper.py").write_text(wrapper_block)
    (tmp_path / "readme_lerobot.py").write_text(lerobot_block)
    (tmp_path / "control_loop.py").write_text(python_blocks(DEPLOY_DOC.read_text())[0])
    (tmp_path / "driver.py").write_text(
        textwrap.dedent(f"""
        import runpy, sys, torch
        from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper

        ref = torch.load({str(reference)!r}, weights_only=False)
        policy = SmolVLAPolicyWrapper.from_pretrained({str(out)!r}, device="cpu")
        chunk = policy.predict_action_chunk(ref["obs"], noise=ref["noise"])
        assert torch.allclose(chunk, ref["chunk"], atol=1e-5), (chunk - ref["chunk"]).abs().max()
        action = policy.select_action(ref["obs"], noise=ref["noise"])
        assert action.shape == (16,), action.shape
        print("WRAPPER OK")
        for script in ("readme_wrapper.py", "readme_lerobot.py"):
            runpy.run_path({str(tmp_path)!r} + "/" + script, run_name="__main__")
            print(script, "OK")
        sys.argv = ["control_loop.py", {str(out)!r}, "--dry-run", "--steps", "6"]
        runpy.run_path({str(tmp_path / "control_loop.py")!r}, run_name="__main__")
    """)
    )
    empty_hf = tmp_path / "empty_hf_home"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(empty_hf),
        "HF_HUB_CACHE": str(empty_hf / "hub"),
        "TRANSFORMERS_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py")],
        cwd=out.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "WRAPPER OK" in result.stdout
    assert "readme_lerobot.py OK" in result.stdout
    assert "dry run: 6 actions of size 16 for task 1 (moving_grasp)" in result.stdout


def test_wrapper_takes_another_vlm_folder(exported, tmp_path):
    out, reference, _, _ = exported
    moved = shutil.copytree(out, tmp_path / "copy")
    elsewhere = tmp_path / "shared_vlm"
    (moved / VLM_DIR).rename(elsewhere)
    with pytest.raises(KuavoError, match="vlm_model_name"):
        SmolVLAPolicyWrapper.from_pretrained(moved, device="cpu")
    with pytest.raises(KuavoError, match="is not a folder"):
        SmolVLAPolicyWrapper.from_pretrained(moved, device="cpu", vlm_model_name=tmp_path / "absent")
    policy = SmolVLAPolicyWrapper.from_pretrained(moved, device="cpu", vlm_model_name=elsewhere)
    ref = torch.load(reference, weights_only=False)
    assert torch.allclose(chunk_of(policy, ref), ref["chunk"], atol=1e-5)


def test_hub_id_is_copied_from_the_hugging_face_cache(seed_stage1, demo_env, tmp_path):
    best, vlm = copy_run(seed_stage1, demo_env, tmp_path)
    snapshot = tmp_path / "hub" / "models--kuavo-test--tiny-vlm" / "snapshots" / "0123abcd"
    shutil.copytree(vlm, snapshot)  # with the VLM's model.safetensors, which must not be copied
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    point_at_vlm(best, "kuavo-test/tiny-vlm")

    out = export_policy(best, tmp_path / "export", cache_dir=tmp_path / "hub").path  # verified: loads from vlm/
    assert (out / VLM_DIR / "tokenizer.json").is_file() and not (out / VLM_DIR / "model.safetensors").exists()
    assert json.loads((out / EXPORT_META_FILE).read_text())["source_vlm_from"] == "Hugging Face cache"

    point_at_vlm(best, "kuavo-test/absent")
    absent = r"'kuavo-test/absent'.*not in the Hugging Face cache.*hf download kuavo-test/absent"
    with pytest.raises(KuavoError, match=absent):
        export_policy(best, tmp_path / "export2", cache_dir=tmp_path / "hub")
    assert not (tmp_path / "export2").exists()


def test_refuses_a_non_empty_target_and_a_non_checkpoint(seed_stage1, tmp_path):
    best = seed_stage1[0] / STAGE_BEST
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(KuavoError, match="exists and is not empty") as error:
        export_main([str(best), str(target)])
    assert "\n" not in str(error.value)
    assert (target / "notes.txt").read_text() == "mine" and sorted(p.name for p in target.iterdir()) == ["notes.txt"]

    not_a_checkpoint = tmp_path / "random"
    not_a_checkpoint.mkdir()
    (not_a_checkpoint / "config.json").write_text("{}")
    with pytest.raises(KuavoError, match="is not a kuavo_train checkpoint"):
        export_main([str(not_a_checkpoint), str(tmp_path / "out")])
    with pytest.raises(KuavoError, match=r"pass a stage's policy dir, e.g. .*task1_moving_grasp/best"):
        export_main([str(seed_stage1[0]), str(tmp_path / "out")])
    copy = shutil.copytree(best, tmp_path / "best")
    with pytest.raises(KuavoError, match="inside the checkpoint"):
        export_policy(copy, copy / "export")
    assert not (tmp_path / "out").exists() and not (copy / "export").exists()


def test_help_and_latency(exported, capsys):
    with pytest.raises(SystemExit) as done:
        export_main(["--help"])
    assert done.value.code == 0
    assert "kuavo-train export CHECKPOINT OUT_DIR" in capsys.readouterr().out
    out = exported[0]
    assert export_main(["--latency-only", str(out), "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"predict_action_chunk: +[\d.]+ ms per chunk", printed), printed
    assert re.search(r"select_action: +[\d.]+ ms on a call that runs the model", printed), printed
    with pytest.raises(KuavoError, match="--latency-only"):
        export_main([str(out), str(out.parent / "x"), "--latency-only", str(out)])


def test_a_target_created_meanwhile_is_never_overwritten(tmp_path):
    target = tmp_path / "export"

    def fill(tmp: Path) -> None:
        (tmp / "model.safetensors").write_text("new")
        target.mkdir()  # another process takes the name while the export is being written
        (target / "theirs.txt").write_text("theirs")

    with pytest.raises(KuavoError, match="created by something else meanwhile"):
        _write_new_dir(target, fill)
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"], "the temp dir is removed"


def test_a_vlm_saved_in_bf16_is_loaded_in_bf16(exported, tmp_path):
    """The wrapper builds the VLM from its config (load_vlm_weights=False) and gives every weight its saved dtype,
    as a VLM loaded with load_vlm_weights=True (bf16) had during training."""
    from safetensors.torch import save_model

    folder = shutil.copytree(exported[0], tmp_path / "bf16")
    policy = SmolVLAPolicyWrapper.from_pretrained(folder, device="cpu").policy
    policy.model.vlm_with_expert.vlm.to(torch.bfloat16)
    save_model(policy, str(folder / "model.safetensors"))
    loaded = SmolVLAPolicyWrapper.from_pretrained(folder, device="cpu")
    assert {p.dtype for p in loaded.policy.model.vlm_with_expert.vlm.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in loaded.policy.model.vlm_with_expert.lm_expert.parameters()} == {torch.float32}
    assert torch.isfinite(loaded.select_action(loaded.make_example_observation(1, seed=0))).all()
