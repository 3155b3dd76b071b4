"""Write a self-contained folder of a trained checkpoint for the robot PC.

    kuavo-train export CHECKPOINT OUT_DIR [--vlm-model-name DIR_OR_HUB_ID] [--no-verify] [--measure-latency]
    kuavo-train export --latency-only EXPORTED_DIR [--device cpu] [--repeats 5]

The folder holds everything inference needs and nothing that points back at the training machine:

    model.safetensors  config.json                 SmolVLA weights (VLM included) + config, vlm_model_name = "vlm"
    policy_preprocessor.json  policy_preprocessor_step_*.safetensors    lerobot pre-processor (normalization
    policy_postprocessor.json policy_postprocessor_step_*.safetensors   stats) and post-processor; tokenizer = vlm
    kuavo_schema.json  kuavo_checkpoint.json       cameras, sizes, instructions (the wrapper); training provenance
    kuavo_export.json                              source paths, file hashes, library versions
    vlm/                                           the VLM backbone's config, tokenizer and processor files (no weights)
    README.txt                                     install and load instructions

SmolVLA rebuilds its architecture from ``vlm_model_name`` (``AutoConfig``/``AutoProcessor``, and the
tokenizer step reads the same path) before loading ``model.safetensors``, which holds every weight.
A checkpoint stores that name as an absolute path or a hub id; the export copies the files it names
(from a local dir, or from the Hugging Face cache for a hub id) into ``vlm/`` and stores the relative
name ``vlm``, which ``SmolVLAPolicyWrapper.from_pretrained`` resolves inside the folder. Plain lerobot
needs the full path of ``vlm/`` passed once (README.txt shows how). The export is written to a hidden
temp dir beside OUT_DIR, loaded back through the wrapper from there (unless ``--no-verify``), then
renamed into place; an existing non-empty OUT_DIR is never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from kuavo_train.deploy.latency import format_latency, measure_select_action_latency
from kuavo_train.deploy.readme import readme_text
from kuavo_train.errors import KuavoError, guarded
from kuavo_train.files import sha256_hex
from kuavo_train.layout import (
    ADAPTER_TABLE_FILE,
    ADAPTERS_DIR,
    CHECKPOINT_META_FILE,
    CONFIG_FILE,
    EXPORT_META_FILE,
    MODEL_FILE,
    POSTPROCESSOR_FILE,
    PREPROCESSOR_FILE,
    SCHEMA_FILE,
)
from kuavo_train.layout import (
    EXPORT_README_FILE as README_FILE,
)
from kuavo_train.layout import (
    EXPORT_VLM_DIR as VLM_DIR,
)
from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import TOKENIZER_STEP, check_checkpoint_dir

EXPORT_FORMAT = 1
# Weight files of a transformers model folder: never copied (model.safetensors of the checkpoint has them).
WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".onnx",
    ".gguf",
    ".tflite",
    ".ot",
    ".npz",
)
WEIGHT_INDEX_SUFFIXES = (".safetensors.index.json", ".bin.index.json")


@dataclass
class VlmSource:
    """Where the VLM backbone's files come from: a local dir, or a hub id's snapshot in the Hugging Face cache."""

    name: str  # vlm_model_name as the checkpoint (or --vlm-model-name) gives it
    path: Path  # the dir the files are copied from
    how: str  # "local dir", "Hugging Face cache", "the checkpoint's vlm/"


@dataclass
class ExportResult:
    path: Path
    files: list[str]  # paths relative to ``path``
    vlm: VlmSource
    size_bytes: int
    checked: str | None = None  # what the verification load did, None with verify=False
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- export


def export_policy(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    vlm_model_name: str | Path | None = None,
    verify: bool = True,
    cache_dir: str | Path | None = None,
) -> ExportResult:
    """Write the self-contained deployment folder of ``checkpoint`` at ``out_dir`` (see the module docstring).

    ``vlm_model_name``: take the VLM files from this local dir or hub id instead of the checkpoint's
    ``vlm_model_name``. ``cache_dir``: the Hugging Face hub cache to look hub ids up in (default: the
    usual one, ``HF_HUB_CACHE``). ``verify``: load the written folder through the wrapper on the CPU
    and run one action chunk before it is renamed into place.
    """
    checkpoint = check_checkpoint_dir(checkpoint).resolve()
    out = _check_out_dir(Path(out_dir).expanduser().resolve(), checkpoint)
    config = _read_json(checkpoint / CONFIG_FILE)
    if config.get("type") != "smolvla":
        raise KuavoError(
            f"{checkpoint / CONFIG_FILE} is a '{config.get('type', '?')}' policy; only smolvla checkpoints "
            "can be exported"
        )
    vlm = locate_vlm(checkpoint, str(config.get("vlm_model_name") or ""), vlm_model_name, cache_dir=cache_dir)
    vlm_files = _vlm_files(vlm)
    policy_files = _policy_files(checkpoint)
    meta = _export_meta(checkpoint, vlm, vlm_files)
    result = ExportResult(out, [], vlm, 0, meta=meta)

    def fill(tmp: Path) -> None:
        for name in policy_files:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            _copy_file(checkpoint / name, tmp / name)
        config.update(vlm_model_name=VLM_DIR, load_vlm_weights=False)
        _write_json(tmp / CONFIG_FILE, config, indent=4)
        preprocessor = _read_json(checkpoint / PREPROCESSOR_FILE)
        for step in preprocessor.get("steps", []):
            if step.get("registry_name") == TOKENIZER_STEP:
                step.setdefault("config", {})["tokenizer_name"] = VLM_DIR
        _write_json(tmp / PREPROCESSOR_FILE, preprocessor, indent=2)
        (tmp / VLM_DIR).mkdir(mode=0o755)
        for source in vlm_files:
            _copy_file(source, tmp / VLM_DIR / source.name)
        meta["files"] = {str(p.relative_to(tmp)): sha256_hex(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        _write_json(tmp / EXPORT_META_FILE, meta, indent=2)
        schema = json.loads((tmp / SCHEMA_FILE).read_text())
        table = _read_json(tmp / ADAPTER_TABLE_FILE)["adapters"] if (tmp / ADAPTER_TABLE_FILE).is_file() else None
        (tmp / README_FILE).write_text(
            readme_text(out.name, meta, schema, {int(k): v for k, v in (table or {}).items()})
        )
        (tmp / README_FILE).chmod(0o644)
        if verify:
            result.checked = _verify(tmp)
        result.files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        result.size_bytes = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())

    _write_new_dir(out, fill)
    return result


def _write_new_dir(target: Path, fill) -> None:
    """Create ``target`` filled by ``fill(tmp)`` in a hidden temp dir beside it, then one rename.

    The rename replaces an empty ``target`` but fails on a non-empty one, so a dir that appeared
    meanwhile is never overwritten; a failure leaves nothing behind.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        fill(tmp)
        tmp.chmod(0o755)
        try:
            os.rename(tmp, target)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise KuavoError(
                    f"export target {target} was created by something else meanwhile; pass a new dir"
                ) from exc
            raise KuavoError(f"cannot move the export into {target} ({exc.strerror}); pass a writable new dir") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_out_dir(out: Path, checkpoint: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise KuavoError(f"export target {out} is a file; pass a new dir name")
    if out.is_dir() and any(out.iterdir()):
        raise KuavoError(f"export target {out} exists and is not empty; pass a new dir (or delete it yourself first)")
    if out == checkpoint or checkpoint in out.parents:
        raise KuavoError(f"export target {out} is inside the checkpoint {checkpoint}; pass a dir outside it")
    return out


def locate_vlm(
    checkpoint: Path, saved: str, override: str | Path | None = None, *, cache_dir: str | Path | None = None
) -> VlmSource:
    """The dir holding the VLM backbone's files: ``override`` or the checkpoint's ``vlm_model_name``.

    A local dir is used as is; a name relative to the checkpoint that is a dir inside it (an export's
    ``vlm``) too; anything else is a hub id looked up in the Hugging Face cache only (never downloaded).
    """
    name = str(override) if override is not None else saved
    if not name:
        raise KuavoError(
            f"{checkpoint / CONFIG_FILE} has no vlm_model_name; pass --vlm-model-name DIR (the VLM backbone's "
            "folder with config.json and tokenizer/processor files)"
        )
    local = Path(name).expanduser()
    if override is None and not local.is_absolute() and (checkpoint / name).is_dir():  # an export's own vlm/ first
        return VlmSource(name, (checkpoint / name).resolve(), "the checkpoint's own copy")
    if local.is_dir():
        return VlmSource(name, local.resolve(), "local dir")
    what = "--vlm-model-name" if override is not None else f"vlm_model_name in {checkpoint / CONFIG_FILE}"
    if local.is_absolute() or name.startswith((".", "~")) or len(local.parts) > 2:
        raise KuavoError(
            f"the VLM backbone folder {name} ({what}) does not exist here; pass --vlm-model-name DIR "
            "pointing at a copy of it (its config.json and tokenizer/processor files are enough)"
        )
    return VlmSource(name, _hub_snapshot(name, what, cache_dir), "Hugging Face cache")


def _hub_snapshot(repo_id: str, what: str, cache_dir: str | Path | None) -> Path:
    from huggingface_hub import snapshot_download

    fix = (
        f"download it once where there is network (`hf download {repo_id} --exclude '*.safetensors'` is enough) "
        "or pass "
        "--vlm-model-name DIR"
    )
    try:
        path = Path(snapshot_download(repo_id=repo_id, local_files_only=True, cache_dir=cache_dir))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError for a malformed id, ...
        raise KuavoError(
            f"the VLM backbone '{repo_id}' ({what}) is not a local dir and not in the Hugging Face cache "
            f"({type(exc).__name__}); {fix}"
        ) from exc
    if not (path / CONFIG_FILE).is_file():
        raise KuavoError(f"the Hugging Face cache holds '{repo_id}' at {path} without its config.json; {fix}")
    return path


def _vlm_files(vlm: VlmSource) -> list[Path]:
    """Top-level non-weight files of the VLM dir (config, tokenizer, processor, chat template, ...)."""
    files = []
    for path in sorted(vlm.path.iterdir()):
        name = path.name
        if name.startswith(".") or not path.is_file():  # is_file follows the HF cache's symlinks
            continue
        if name.endswith(WEIGHT_INDEX_SUFFIXES) or path.suffix in WEIGHT_SUFFIXES:
            continue
        files.append(path)
    names = {p.name for p in files}
    if CONFIG_FILE not in names:
        raise KuavoError(
            f"the VLM backbone folder {vlm.path} has no config.json; pass --vlm-model-name DIR with a "
            "transformers model folder (config.json, tokenizer and processor files)"
        )
    if not names & {"tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model"}:
        raise KuavoError(
            f"the VLM backbone folder {vlm.path} has no tokenizer files; pass --vlm-model-name DIR with the "
            "complete model folder"
        )
    return files


def _policy_files(checkpoint: Path) -> list[str]:
    """The checkpoint's files inference needs: weights, config, both pipelines with their state files, kuavo
    metadata."""
    names = [MODEL_FILE, POSTPROCESSOR_FILE, SCHEMA_FILE]  # CONFIG_FILE and PREPROCESSOR_FILE are rewritten
    if (checkpoint / CHECKPOINT_META_FILE).is_file():
        names.append(CHECKPOINT_META_FILE)
    names += _adapter_files(checkpoint)
    for pipeline in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
        for step in _read_json(checkpoint / pipeline).get("steps", []):
            state_file = step.get("state_file")
            if state_file:
                if not (checkpoint / state_file).is_file():
                    raise KuavoError(
                        f"checkpoint {checkpoint} is incomplete: {state_file} (named in {pipeline}) is missing"
                    )
                names.append(state_file)
    return names


def _adapter_files(checkpoint: Path) -> list[str]:
    """A per-task LoRA checkpoint's bank (its table and every adapter it names); none for a plain checkpoint."""
    table_path = checkpoint / ADAPTER_TABLE_FILE
    if not table_path.is_file():
        return []
    names = [ADAPTER_TABLE_FILE]
    for adapter in sorted(set(_read_json(table_path).get("adapters", {}).values())):
        for file in ("adapter_config.json", "adapter_model.safetensors"):
            name = f"{ADAPTERS_DIR}/{adapter}/{file}"
            if not (checkpoint / name).is_file():
                raise KuavoError(
                    f"checkpoint {checkpoint} is incomplete: {name} (named in {ADAPTER_TABLE_FILE}) is missing"
                )
            names.append(name)
    return names


def _export_meta(checkpoint: Path, vlm: VlmSource, vlm_files: list[Path]) -> dict:
    meta_path = checkpoint / CHECKPOINT_META_FILE
    trained = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return {
        "format": EXPORT_FORMAT,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source_checkpoint": str(checkpoint),
        "source_vlm_model_name": vlm.name,
        "source_vlm_dir": str(vlm.path),
        "source_vlm_from": vlm.how,
        "vlm_dir": VLM_DIR,
        "vlm_files": [p.name for p in vlm_files],
        "checkpoint": {
            k: trained[k]
            for k in ("stage", "task_id", "task_name", "epoch", "step", "best_loss", "stats_hash")
            if k in trained
        },
        "versions": {name: _version(name) for name in ("kuavo_train", "lerobot", "transformers", "torch")},
    }


def _verify(folder: Path) -> str:
    """Load ``folder`` through the wrapper on the CPU and run one action chunk; KuavoError if that fails."""
    import torch

    from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # lerobot prints its loading steps
            wrapper = SmolVLAPolicyWrapper.from_pretrained(folder, device="cpu")
            own = wrapper.checkpoint_meta.get("task_id")
            task = next((t for t in wrapper.schema.tasks if t.task_id == own), wrapper.schema.tasks[-1])
            chunk = wrapper.predict_action_chunk(wrapper.make_example_observation(task.task_id, seed=0))
    except KuavoError as exc:
        raise KuavoError(f"the exported folder does not load, so nothing was written: {exc}") from exc
    if tuple(chunk.shape) != (1, wrapper.n_action_steps, task.action_dim) or not torch.isfinite(chunk).all():
        raise KuavoError(
            f"the exported folder gives a bad action chunk {tuple(chunk.shape)} for task {task.task_id}; "
            "nothing was written"
        )
    return (
        f"loads through SmolVLAPolicyWrapper on cpu from the new folder alone; an action chunk for task "
        f"{task.task_id} ({task.name}) has shape {tuple(chunk.shape)} and finite values"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kuavo-train export",
        usage=(
            "kuavo-train export CHECKPOINT OUT_DIR [--vlm-model-name DIR_OR_HUB_ID] [--no-verify] [--measure-latency]\n"
            "       kuavo-train export --latency-only EXPORTED_DIR [--device DEVICE] [--repeats N]"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Write a self-contained deployment folder of a trained checkpoint: weights, lerobot pre/post-processors\n"
            "with the normalization stats, the kuavo metadata the wrapper needs, the VLM backbone's config/tokenizer/\n"
            "processor files (vlm/, no weights) and a README.txt. It loads offline on another machine with\n"
            "SmolVLAPolicyWrapper.from_pretrained(DIR) or plain lerobot, without the run dir, the original VLM folder\n"
            "or the network. OUT_DIR must not exist (or be empty); nothing is written unless the new folder loads."
        ),
        epilog=(
            "examples:\n"
            "  kuavo-train export outputs/train/smolvla_sequential/task4_sorting/best deploy/kuavo_task4\n"
            "  kuavo-train export outputs/demo/task4_sorting/best /tmp/demo_export --measure-latency\n"
            "  kuavo-train export --latency-only deploy/kuavo_task4 --device cuda\n"
            "docs/deploy.md: installing on the robot PC and a control loop."
        ),
    )
    parser.add_argument(
        "checkpoint",
        nargs="?",
        type=Path,
        metavar="CHECKPOINT",
        help="a stage's policy dir, e.g. outputs/train/smolvla_sequential/task4_sorting/best",
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, metavar="OUT_DIR", help="the folder to create (must not exist, or be empty)"
    )
    parser.add_argument(
        "--vlm-model-name",
        metavar="DIR_OR_HUB_ID",
        help="take the VLM backbone's files from this local dir or hub id (Hugging Face cache only) "
        "instead of the checkpoint's vlm_model_name",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip loading the new folder through the wrapper (and one action chunk) before it is moved into place",
    )
    parser.add_argument(
        "--measure-latency",
        action="store_true",
        help="after exporting, time select_action / predict_action_chunk of the new folder on --device",
    )
    parser.add_argument(
        "--latency-only",
        metavar="EXPORTED_DIR",
        type=Path,
        help="export nothing: time an existing folder (an export or a policy dir), e.g. on the robot PC",
    )
    parser.add_argument("--device", default="cpu", help="device for the latency measurement: cpu (default), cuda, auto")
    parser.add_argument(
        "--repeats", type=int, default=5, metavar="N", help="action chunks timed for the latency (default 5)"
    )
    return parser


def export_main(argv: list[str]) -> int:
    """``kuavo-train export``; returns the exit status, raises KuavoError for user errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.latency_only is not None:
        if args.checkpoint is not None or args.out_dir is not None:
            raise KuavoError(
                "--latency-only DIR exports nothing; drop the CHECKPOINT OUT_DIR arguments (or --latency-only)"
            )
        folder = check_checkpoint_dir(args.latency_only)
        print(format_latency(folder, measure_select_action_latency(folder, device=args.device, repeats=args.repeats)))
        return 0
    if args.checkpoint is None or args.out_dir is None:
        raise KuavoError("usage: kuavo-train export CHECKPOINT OUT_DIR (see kuavo-train export --help)")
    result = export_policy(args.checkpoint, args.out_dir, vlm_model_name=args.vlm_model_name, verify=not args.no_verify)
    print(
        f"Exported {result.meta['source_checkpoint']} -> {result.path} ({len(result.files)} files, "
        f"{result.size_bytes / 1e6:.1f} MB)"
    )
    print(f"  VLM files from {result.vlm.path} ({result.vlm.how}) -> {VLM_DIR}/: {', '.join(result.meta['vlm_files'])}")
    print(f"  check: {result.checked or 'skipped (--no-verify)'}")
    print(f"  Copy the whole folder to the robot PC; {result.path / README_FILE} says how to install and load it.")
    if args.measure_latency:
        latency = measure_select_action_latency(result.path, device=args.device, repeats=args.repeats)
        print(format_latency(result.path, latency))
    return 0


# ---------------------------------------------------------------------------------------------- helpers


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KuavoError(f"could not read {path} ({type(exc).__name__}); the checkpoint dir is damaged") from exc
    if not isinstance(data, dict):
        raise KuavoError(f"{path} does not hold a JSON object; the checkpoint dir is damaged")
    return data


def _write_json(path: Path, payload: dict, indent: int) -> None:
    path.write_text(json.dumps(payload, indent=indent) + "\n")
    path.chmod(0o644)


def _copy_file(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)  # follows symlinks (the HF cache's blobs)
    target.chmod(0o644)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def main() -> int:
    """``python -m kuavo_train.deploy.export``: as ``kuavo-train export``."""
    return guarded(lambda: export_main(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
