"""A tiny, randomly initialised SmolVLM backbone for tests and the offline demo.

SmolVLA is built on ``lerobot/smolvla_base`` (itself on ``HuggingFaceTB/SmolVLM2-500M-Video-Instruct``),
which cannot be downloaded here. lerobot only needs a *directory* with the SmolVLM file layout: it calls
``AutoConfig`` / ``SmolVLMForConditionalGeneration`` / ``AutoProcessor`` on ``vlm_model_name`` and
``AutoTokenizer`` on the same path for the language tokens. This module writes such a directory with the
same architecture at toy scale (~0.4M parameters, builds in well under a second), so the whole training
and evaluation stack can run end to end on a CPU:

    SmolVLAConfig(vlm_model_name=str(out_dir), load_vlm_weights=False, num_vlm_layers=4,
                  resize_imgs_with_padding=(image_size, image_size), ...)

The directory holds a byte-level BPE tokenizer trained on the task instructions plus some generic English
text (so it tokenizes any string, no ``<unk>``), a ``SmolVLMProcessor``, ``config.json`` and seeded random
weights in ``model.safetensors`` (so ``load_vlm_weights=True`` works too). Outputs are meaningless; the
point is shapes, wiring and speed. Same arguments => byte-identical files.

CLI::

    python -m kuavo_train.demo.tiny_backbone --out DIR [--seed N] [--image-size N] \
        [--instructions-from configs/policy/tasks]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kuavo_train.errors import KuavoError, guarded

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMProcessor

# Bump when the layout or the architecture below changes: old dirs are then rebuilt.
FORMAT_VERSION = 1
MANIFEST_NAME = "tiny_backbone.json"
REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
)

# Text model (Llama). The action expert copies this config at 0.75x width (48) but keeps head_dim and the
# head counts, and its cross-attention k/v projections read num_key_value_heads * head_dim = 32 features.
TEXT_HIDDEN = 64
TEXT_INTERMEDIATE = 256
TEXT_HEADS = 4
TEXT_KV_HEADS = 2
TEXT_HEAD_DIM = 16
MAX_POSITIONS = 2048
# Vision model (SigLIP-style). The patch grid is fixed at 8x8 so pixel shuffle (scale 2) always yields
# 16 tokens per image whatever the image size.
VISION_HIDDEN = 32
VISION_INTERMEDIATE = 64
VISION_HEADS = 2
VISION_LAYERS = 1
PATCH_GRID = 8
SCALE_FACTOR = 2
VOCAB_SIZE = 1024

# Named as in SmolVLM2's tokenizer, so processor attributes (`fake_image_token_id`, ...) resolve.
BOS, EOS, PAD, UNK = "<|im_start|>", "<end_of_utterance>", "<|im_end|>", "<|endoftext|>"
MODEL_SPECIFIC_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": EOS,
    "video_token": "<video>",
}
SPECIAL_TOKENS = (UNK, BOS, PAD, *dict.fromkeys(MODEL_SPECIFIC_TOKENS.values()))

GENERIC_TEXT = (
    "The robot looks at the table and picks up the red cube with its left hand.",
    "Move the arm slowly to the right, then open the gripper and release the object.",
    "Put the bottle in the box, close the lid, and return to the starting position.",
    "The humanoid walks forward two steps, turns around, and stops in front of the shelf.",
    "Grasp the handle of the cup firmly and lift it above the plate.",
    "Push the green block to the left side of the tray until it touches the wall.",
    "Place the package on the scale, wait for the reading, and then pick it up again.",
    "Transfer the tool from the right hand to the left hand without dropping it.",
    "Sort the parts by color: blue parts go in the first bin, yellow parts in the second.",
    "Rotate the object so that the label faces up and the cap points away from you.",
    "What is on the conveyor belt? A small box, a bottle, and a metal workpiece.",
    "Stack the three plates on top of each other in the middle of the counter.",
    "Open the drawer, take out the spoon, and put it next to the bowl.",
    "The camera on the head sees the whole scene; the wrist cameras see the fingers.",
    "If the grasp fails, try again from a different angle and move more carefully.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "Hello! This is a short test sentence with some common English words in it.",
    "Please wait here while I check the position of the target area on the floor.",
)


@dataclass(frozen=True)
class TinyBackboneSpec:
    """The arguments that fully determine a backbone dir (recorded in its manifest)."""

    seed: int
    instructions: tuple[str, ...]
    image_size: int
    num_text_layers: int
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "instructions": list(self.instructions)}


def patch_size_for(image_size: int) -> int:
    """Patch size giving a PATCH_GRID x PATCH_GRID patch grid for a square `image_size` image."""
    if image_size < PATCH_GRID or image_size % PATCH_GRID:
        raise KuavoError(f"tiny backbone: image_size={image_size} must be a positive multiple of {PATCH_GRID}")
    return image_size // PATCH_GRID


def build_tiny_backbone(
    out_dir: Path,
    *,
    seed: int = 0,
    instructions: Sequence[str] = (),
    image_size: int = 64,
    num_text_layers: int = 4,
) -> Path:
    """Write (or reuse) a tiny SmolVLM model dir at `out_dir` and return its path.

    Images are (3, image_size, image_size) in [-1, 1]; each becomes 16 tokens of width TEXT_HIDDEN.
    An existing dir built with the same arguments is returned as is; one built with other arguments is
    replaced. Any other non-empty dir is left alone and raises KuavoError.
    """
    out_dir = Path(out_dir)
    if num_text_layers < 1:
        raise KuavoError(f"tiny backbone: num_text_layers={num_text_layers} must be >= 1")
    spec = TinyBackboneSpec(seed, tuple(str(s) for s in instructions), image_size, num_text_layers)
    patch_size_for(image_size)
    if _is_complete(out_dir, spec):
        return out_dir
    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _write_backbone(staged, spec)
        return _install(staged, out_dir, spec)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(path: Path, spec: TinyBackboneSpec) -> bool:
    manifest = _read_manifest(path)
    if manifest is None or manifest.get("spec") != spec.to_json():
        return False
    return all((path / name).is_file() for name in REQUIRED_FILES)


def _check_replaceable(path: Path) -> None:
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    if not path.is_dir() or _read_manifest(path) is None:
        raise KuavoError(f"tiny backbone: {path} exists and is not a tiny backbone dir; pick another --out")


def _install(staged: Path, out_dir: Path, spec: TinyBackboneSpec) -> Path:
    """Move the finished `staged` dir to `out_dir` with renames, so readers never see half a backbone."""
    try:
        os.rename(staged, out_dir)  # also replaces an empty dir
        return out_dir
    except OSError:
        if _is_complete(out_dir, spec):  # a concurrent build of the same spec won the race
            return out_dir
    _check_replaceable(out_dir)
    stale = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex}")
    os.rename(out_dir, stale)
    os.rename(staged, out_dir)
    shutil.rmtree(stale, ignore_errors=True)
    return out_dir


def _write_backbone(path: Path, spec: TinyBackboneSpec) -> None:
    """Write tokenizer, processor, config, weights and manifest of `spec` into the empty dir `path`."""
    import tokenizers
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    tokenizer = train_tokenizer(spec.instructions)
    make_processor(tokenizer, spec.image_size).save_pretrained(path)
    config = make_config(tokenizer, spec.image_size, spec.num_text_layers)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar is just noise in test logs
    try:
        init_model(config, spec.seed).save_pretrained(path)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    versions = {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "torch": torch.__version__,
    }
    manifest = {"spec": spec.to_json(), "built_with": versions}
    (path / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    # mkdtemp and save_pretrained create owner-only modes; the dir is shared like any other artefact.
    path.chmod(0o755)
    for child in path.iterdir():
        child.chmod(0o644)


def train_tokenizer(instructions: Sequence[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE (<= VOCAB_SIZE tokens) trained on `instructions` + GENERIC_TEXT, SmolVLM special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Instructions repeated so their words win merges and become few tokens each, as in a real vocab.
    backend.train_from_iterator([*GENERIC_TEXT, *(list(instructions) * 4)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=dict(MODEL_SPECIFIC_TOKENS),
        model_max_length=MAX_POSITIONS,
    )


def make_processor(tokenizer: PreTrainedTokenizerFast, image_size: int) -> SmolVLMProcessor:
    """SmolVLMProcessor resizing to a single `image_size` tile (no splitting), 16 `<image>` tokens per image."""
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    size = {"longest_edge": image_size}
    return SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(do_image_splitting=False, size=size, max_image_size=size),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
        image_seq_len=(PATCH_GRID // SCALE_FACTOR) ** 2,
    )


def make_config(tokenizer: PreTrainedTokenizerFast, image_size: int, num_text_layers: int) -> SmolVLMConfig:
    """SmolVLMConfig: Llama text model (TEXT_* sizes, vocab = len(tokenizer)) + SigLIP-style vision model."""
    from transformers import LlamaConfig, SmolVLMConfig
    from transformers.models.smolvlm.configuration_smolvlm import SmolVLMVisionConfig

    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_INTERMEDIATE,
        num_hidden_layers=num_text_layers,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_KV_HEADS,
        head_dim=TEXT_HEAD_DIM,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-5,
        rope_theta=100_000.0,
        # Untied like SmolVLM2: lerobot freezes "lm_head" by name and errors if no parameter matches.
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = SmolVLMVisionConfig(
        hidden_size=VISION_HIDDEN,
        intermediate_size=VISION_INTERMEDIATE,
        num_hidden_layers=VISION_LAYERS,
        num_attention_heads=VISION_HEADS,
        image_size=image_size,
        patch_size=patch_size_for(image_size),
    )
    return SmolVLMConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids(MODEL_SPECIFIC_TOKENS["image_token"]),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def init_model(config: SmolVLMConfig, seed: int) -> Any:
    """SmolVLMForConditionalGeneration with float32 weights drawn from `seed` (global RNG left untouched)."""
    import torch
    from transformers import SmolVLMForConditionalGeneration

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmolVLMForConditionalGeneration(config)
    return model.to(torch.float32)


def read_instructions(tasks_dir: Path) -> list[str]:
    """`language_instruction` of every `*.yaml` in `tasks_dir`, in file-name order."""
    import yaml

    tasks_dir = Path(tasks_dir)
    files = sorted(tasks_dir.glob("*.yaml"))
    if not files:
        raise KuavoError(f"tiny backbone: no *.yaml task configs in {tasks_dir}; check --instructions-from")
    instructions = []
    for file in files:
        data = yaml.safe_load(file.read_text()) or {}
        if isinstance(data, dict) and isinstance(data.get("language_instruction"), str):
            instructions.append(data["language_instruction"])
    if not instructions:
        raise KuavoError(f"tiny backbone: no task config in {tasks_dir} has a `language_instruction` string")
    return instructions


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the backbone dir. Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m kuavo_train.demo.tiny_backbone", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="backbone dir to write (reused if up to date)")
    parser.add_argument("--seed", type=int, default=0, help="weight init seed")
    parser.add_argument("--image-size", type=int, default=64, help=f"square image side, multiple of {PATCH_GRID}")
    parser.add_argument("--num-text-layers", type=int, default=4, help="text (VLM) transformer layers")
    parser.add_argument("--instructions-from", type=Path, help="dir of task *.yaml with `language_instruction`")
    args = parser.parse_args(argv)
    return guarded(lambda: _build_and_print(args))


def _build_and_print(args: argparse.Namespace) -> int:
    instructions = read_instructions(args.instructions_from) if args.instructions_from else []
    out = build_tiny_backbone(
        args.out,
        seed=args.seed,
        instructions=instructions,
        image_size=args.image_size,
        num_text_layers=args.num_text_layers,
    )
    print(out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
