"""An offline stand-in for ``HuggingFaceTB/SmolVLM2-500M-Video-Instruct``: same architecture, no weights.

SmolVLA's full-size figures (parameter counts, activation memory, step time) depend only on the
backbone's architecture, since ``--full`` runs with random weights anyway. Where the hub cannot be
reached, this writes a backbone dir with SmolVLM2-500M's published sizes (text: SmolLM2-360M-style
Llama, 32 layers of width 960, 15 query / 5 key-value heads of 64, MLP 2560, vocab 49280, untied
head; vision: SigLIP base, 12 layers of width 768, MLP 3072, 512 px images in 16 px patches; pixel
shuffle 4, so 64 tokens per image) and our small trained tokenizer. Only token ids < 1024 occur,
which does not change any tensor size: the embedding table keeps its 49280 rows.

    .venv/bin/python benchmarks/smolvlm2_architecture.py /tmp/smolvlm2_arch
    .venv/bin/python benchmarks/throughput.py --full --vlm-model-name /tmp/smolvlm2_arch --memory-only

The check that this is the real architecture: SmolVLA built on it with the base config (16 VLM
layers) has the parameter count the SmolVLA paper reports (about 450M); the benchmark prints it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

TEXT = dict(
    vocab_size=49280,
    hidden_size=960,
    intermediate_size=2560,
    num_hidden_layers=32,
    num_attention_heads=15,
    num_key_value_heads=5,
    head_dim=64,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100_000.0,
    tie_word_embeddings=False,
)
VISION = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=512, patch_size=16
)
SCALE_FACTOR = 4
IMAGE_SEQ_LEN = (VISION["image_size"] // VISION["patch_size"] // SCALE_FACTOR) ** 2  # 64


def write_architecture(out_dir: Path, instructions: list[str]) -> Path:
    """Config + tokenizer + processor of the SmolVLM2-500M architecture in ``out_dir`` (no weights)."""
    from transformers import LlamaConfig, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor
    from transformers.models.smolvlm.configuration_smolvlm import SmolVLMVisionConfig

    from kuavo_train.demo.tiny_backbone import MODEL_SPECIFIC_TOKENS, train_tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(instructions)
    size = {"longest_edge": VISION["image_size"]}
    SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(do_image_splitting=False, size=size, max_image_size=size),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
        image_seq_len=IMAGE_SEQ_LEN,
    ).save_pretrained(out_dir)
    ids = dict(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    SmolVLMConfig(
        text_config=LlamaConfig(**TEXT, **ids).to_dict(),
        vision_config=SmolVLMVisionConfig(**VISION).to_dict(),
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids(MODEL_SPECIFIC_TOKENS["image_token"]),
        pad_token_id=tokenizer.pad_token_id,
    ).save_pretrained(out_dir)
    return out_dir


def main(argv=None) -> int:
    from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    cfg = load_config(DEFAULT_CONFIG_DIR, "smolvla_sequential_base", [])
    path = write_architecture(args.out_dir, [t.language_instruction for t in cfg.tasks])
    print(f"SmolVLM2-500M architecture (no weights) written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
