"""README.txt of an export: what is inside, how to install, how to load it with the wrapper or plain lerobot."""

from __future__ import annotations

from kuavo_train.layout import ADAPTER_TABLE_FILE, ADAPTERS_DIR, EXPORT_META_FILE
from kuavo_train.layout import EXPORT_VLM_DIR as VLM_DIR


def readme_text(folder_name: str, meta: dict, schema: dict, adapters: dict[int, str] | None = None) -> str:
    """README.txt of an export: what is inside, install, load with the wrapper / plain lerobot, another VLM folder.
    ``adapters``: a per-task LoRA model's task id -> adapter name."""
    tasks = schema["tasks"]
    trained = meta.get("checkpoint", {})
    origin = ", ".join(f"{k} {trained[k]}" for k in ("stage", "task_name", "epoch", "step") if k in trained)
    cameras = {key: tuple(shape) for key, shape in schema["cameras"].items()}
    camera_lines = "".join(f"    {key!r}: {shape},\n" for key, shape in cameras.items())
    # The example uses the checkpoint's own (latest trained) task; the schema lists the whole curriculum.
    last = next((t for t in tasks if t["task_id"] == trained.get("task_id")), tasks[-1])
    task_lines = "\n".join(
        f"  task {t['task_id']} {t['name']}: state {t['state_dim']}, action {t['action_dim']}\n    {t['instruction']!r}"
        for t in tasks
    )
    stage_note = (
        f"\nThis checkpoint is from stage {trained['stage']} of {len(tasks)}: the tasks of later stages are not "
        "trained yet."
        if "stage" in trained and trained["stage"] < len(tasks)
        else ""
    )
    adapter_note = (
        f"\n   This model has one LoRA adapter per task ({ADAPTERS_DIR}/<task>/, {ADAPTER_TABLE_FILE}): the wrapper "
        "routes each\n   instruction to its task's adapter. The lines above run the shared base only; for one task "
        "add,\n   after SmolVLAPolicy.from_pretrained (needs peft):\n     from peft import PeftModel\n"
        f'     policy = PeftModel.from_pretrained(policy, str(folder / "{ADAPTERS_DIR}/'
        f'{(adapters or {}).get(last["task_id"], "<task dir>")}")).merge_and_unload()\n'
        if adapters
        else ""
    )
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    return f"""\
kuavo_train deployment export
=============================

A trained SmolVLA policy, self-contained: it loads offline without the training run, the original
VLM backbone folder or the network.

Exported {meta["exported_at"]} from {meta["source_checkpoint"]}
({origin or "no kuavo_checkpoint.json"}) with {versions}.
VLM backbone files (config, tokenizer, processor; no weights) copied into {VLM_DIR}/ from
{meta["source_vlm_model_name"]} ({meta["source_vlm_from"]}).

Contents
  model.safetensors, config.json     SmolVLA weights (the VLM's included) and config; vlm_model_name = "{VLM_DIR}"
  policy_preprocessor*, policy_postprocessor*
                                     lerobot processors with the normalization stats; tokenizer = "{VLM_DIR}"
  kuavo_schema.json                  cameras, state/action sizes, trained instructions (used by the wrapper)
  kuavo_checkpoint.json              training provenance (stage, epoch, step, loss, stats hash)
  {EXPORT_META_FILE:<34} source paths, sha256 of every file, library versions
  {VLM_DIR}/                               the VLM backbone's config, tokenizer and processor files

Inputs at {schema["fps"]:g} fps: RGB images of the cameras (C, H, W as trained)
{camera_lines.rstrip()}
and observation.state of the task's own size. Tasks of the curriculum (the language instruction
selects the task; the state/action sizes are the task's own).{stage_note}
{task_lines}

1. Install (robot PC, Python >= 3.12), from a checkout of the kuavo_train repository:

     python3 -m venv ~/kuavo-venv
     ~/kuavo-venv/bin/pip install /path/to/kuavo_train

   No extras: [dev] only adds pytest and [sim] the Meta-World benchmark. Copy this whole folder to the
   robot PC; keep its files together (vlm/ included). Set HF_HUB_OFFLINE=1 when there is no network.

2. Load with the kuavo_train wrapper (raw observations in, raw clipped actions of the task's size out):

```python
from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper

policy = SmolVLAPolicyWrapper.from_pretrained("{folder_name}", device="cpu")   # this folder; or "cuda", "auto"
obs = policy.make_example_observation(task_id={last["task_id"]}, seed=0)   \
# on the robot: uint8 RGB images + joint state
action = policy.select_action(obs)    # ({last["action_dim"]},) for task {last["task_id"]}
print(policy.trained_instructions, action.shape)
```

   The wrapper finds {VLM_DIR}/ inside the folder by itself. docs/deploy.md of the repository has a
   complete control loop.

3. Load with plain lerobot 0.6.1 (no kuavo_train needed). config.json names the VLM files "{VLM_DIR}",
   which lerobot would look up relative to the working directory (or on the hub): give it the full
   path, once for the model and once for the tokenizer step:

```python
from pathlib import Path

import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.factory import make_pre_post_processors
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

folder = Path("{folder_name}").resolve()    # this folder
vlm = str(folder / "{VLM_DIR}")
config = PreTrainedConfig.from_pretrained(folder)
config.vlm_model_name = vlm
config.device = "cpu"                          # or "cuda"
policy = SmolVLAPolicy.from_pretrained(folder, config=config)
pre, post = make_pre_post_processors(config, pretrained_path=str(folder), preprocessor_overrides={{
    "tokenizer_processor": {{"tokenizer_name": vlm}}, "device_processor": {{"device": config.device}}}})

cameras = {{
{camera_lines}}}
batch = {{key: torch.rand(1, *shape) for key, shape in cameras.items()}}   # (1, C, H, W) RGB floats in [0, 1]
state = torch.zeros(1, {last["state_dim"]})                                    # the task's own state
batch["observation.state"] = torch.nn.functional.pad(state, (0, {schema["state_dim"]} - state.shape[-1]))
batch["task"] = [{last["instruction"]!r}]
action = post(policy.select_action(pre(batch)))[0, :{last["action_dim"]}]        # raw, not clipped
print(action.shape)
```

   Unlike the wrapper, plain lerobot does not pad the state, resize images, match instructions
   loosely, cut the action to the task's size or clip it to the training range.
{adapter_note}
4. Another copy of the VLM files (e.g. a shared HuggingFaceTB/SmolVLM2-500M-Video-Instruct folder):

     SmolVLAPolicyWrapper.from_pretrained("{folder_name}", vlm_model_name="/path/to/vlm_folder")

   (plain lerobot: use that path as vlm in step 3). Only its config, tokenizer and processor files
   are read; they must be those of the backbone the model was trained on.

5. Latency on this machine (synthetic observation, no robot needed):

     kuavo-train export --latency-only {folder_name} --device cpu
"""


# ---------------------------------------------------------------------------------------------- CLI
