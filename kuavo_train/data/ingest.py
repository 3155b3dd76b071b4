"""Source dataset dir (Kuavo v2.1 export, or v3.0) -> a v3.0 dir lerobot 0.6.1 can read.

v2.1 data is converted once into ``<cache_dir>/<fingerprint>/`` with lerobot's own step functions
(``convert_info``, ``convert_tasks``, ``convert_data``, ``convert_videos``,
``convert_episodes_metadata``). We never call ``convert_dataset`` itself: it renames the source.
The source is never written to. A staging dir holds what the converter reads: links to the source
files, except that Kuavo's uint16 depth columns are dropped from the parquet files (lerobot's
pandas concat crashes on them) and legacy ``info.json`` fields are normalised.
Conversion writes to a temp dir that is renamed into place, so a crash leaves no half cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq

from kuavo_train.data.source import DEPTH_PREFIX, SourceInfo, read_source_info
from kuavo_train.errors import KuavoError, first_line

logger = logging.getLogger(__name__)

# Bump when the staging/conversion recipe changes so old caches are not reused.
_INGEST_RECIPE_VERSION = "1"
_CONVERTED_MARKER = "kuavo_ingest.json"


def ingest_dataset(source_root: str | Path, cache_dir: str | Path, *, keep_depth: bool = False) -> Path:
    """Return a v3.0 dataset dir for ``source_root``, converting a v2.1 source into the cache once."""
    info = read_source_info(source_root)
    if info.version == "v3.0":
        return info.root
    cache_root = Path(cache_dir).expanduser()
    target = cache_root / fingerprint_source(info, keep_depth=keep_depth)
    if (target / _CONVERTED_MARKER).is_file():
        logger.info("using cached conversion of %s at %s", info.root, target)
        return target
    _convert_into(info, target, keep_depth=keep_depth)
    return target


def fingerprint_source(info: SourceInfo, *, keep_depth: bool) -> str:
    """Key of a source's conversion: resolved path + meta file contents + data/video file sizes and mtimes."""
    digest = hashlib.sha256()
    digest.update(f"{_INGEST_RECIPE_VERSION}|{info.root.resolve()}|depth={keep_depth}".encode())
    for path in sorted((info.root / "meta").glob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    for sub in ("data", "videos"):
        for path in sorted((info.root / sub).rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.relative_to(info.root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return f"{info.root.name}-{digest.hexdigest()[:16]}"


def _convert_into(info: SourceInfo, target: Path, *, keep_depth: bool) -> None:
    from lerobot.scripts import convert_dataset_v21_to_v30 as v21

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    started = time.perf_counter()
    print(
        f"converting {info.root} (v2.1, {info.total_episodes} episodes) into the cache {target} (once) ...", flush=True
    )
    try:
        with quiet_conversion(v21):
            _run_converter(v21, info, work, target, keep_depth=keep_depth)
        print(f"  converted in {time.perf_counter() - started:.1f}s", flush=True)
    except KuavoError:
        raise
    except Exception as exc:
        raise KuavoError(
            f"converting {info.root} from v2.1 to v3.0 failed: "
            f"{type(exc).__name__}: {first_line(exc)}; "
            f"run `kuavo-train check-data {info.root}` to find the defect"
        ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _SayOnce(logging.Filter):
    """lerobot warns "Unknown fields in DatasetInfo" twice per v2.1 dataset it converts; say it once, explained."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Unknown fields in DatasetInfo"):
            return True
        if _SayOnce.said:
            return False
        _SayOnce.said = True
        fields = record.getMessage().split(":", 1)[1].split(". These", 1)[0].strip()
        record.msg, record.args = (
            (
                f"lerobot: v2.1 meta/info.json fields {fields} have no place in format v3.0 and are "
                "dropped by the conversion (harmless; said once)"
            ),
            (),
        )
        return True


@contextmanager
def quiet_conversion(v21):
    """lerobot's converter prints a progress bar per step and the `datasets` library two more per dataset;
    one line per dataset says the same. The converter's warnings still pass (the repeated one once)."""
    from datasets.utils import logging as datasets_logging

    say_once = _SayOnce()
    lerobot_logger = logging.getLogger("lerobot.datasets.utils")
    lerobot_logger.addFilter(say_once)
    bars_were_on = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    real_tqdm = v21.tqdm
    v21.tqdm = SimpleNamespace(tqdm=functools.partial(real_tqdm.tqdm, disable=True))
    try:
        yield
    finally:
        v21.tqdm = real_tqdm
        if bars_were_on:
            datasets_logging.enable_progress_bar()
        lerobot_logger.removeFilter(say_once)


def _run_converter(v21, info: SourceInfo, work: Path, target: Path, *, keep_depth: bool) -> None:
    """lerobot's step functions from a staging dir (links to the source) into ``target`` via ``work``."""
    staging, converted = work / "staging", work / "v30"
    _stage_source(info, staging, keep_depth=keep_depth)
    logger.info("converting %s (v2.1) into %s", info.root, target)
    v21.convert_info(staging, converted, v21.DEFAULT_DATA_FILE_SIZE_IN_MB, v21.DEFAULT_VIDEO_FILE_SIZE_IN_MB)
    v21.convert_tasks(staging, converted)
    episodes_meta = v21.convert_data(staging, converted, v21.DEFAULT_DATA_FILE_SIZE_IN_MB)
    videos_meta = v21.convert_videos(staging, converted, v21.DEFAULT_VIDEO_FILE_SIZE_IN_MB)
    v21.convert_episodes_metadata(staging, converted, episodes_meta, videos_meta)
    (converted / _CONVERTED_MARKER).write_text(
        json.dumps(
            {"source": str(info.root.resolve()), "keep_depth": keep_depth, "recipe": _INGEST_RECIPE_VERSION}, indent=2
        )
    )
    if target.exists():
        shutil.rmtree(target)  # an incomplete conversion of ours (no marker): safe to replace
    os.replace(converted, target)


def _stage_source(info: SourceInfo, staging: Path, *, keep_depth: bool) -> None:
    """Lay out what lerobot's converter reads, linking to the source instead of copying it."""
    (staging / "meta").mkdir(parents=True)
    dropped = set() if keep_depth else {k for k in info.features if k.startswith(DEPTH_PREFIX)}
    _write_staged_info(info, staging, dropped)
    for name in ("episodes.jsonl", "tasks.jsonl"):
        os.symlink(info.root / "meta" / name, staging / "meta" / name)
    _write_staged_episode_stats(info, staging, dropped)
    for parquet in info.data_files:
        dest = staging / parquet.relative_to(info.root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dropped:
            table = pq.read_table(parquet)
            pq.write_table(table.drop_columns([c for c in table.column_names if c in dropped]), dest)
        else:
            os.symlink(parquet, dest)
    if info.video_keys:
        os.symlink(info.root / "videos", staging / "videos")


def _write_staged_info(info: SourceInfo, staging: Path, dropped: set[str]) -> None:
    raw = dict(info.raw_info)
    raw["features"] = {k: v for k, v in raw["features"].items() if k not in dropped}
    # The converter deletes these keys, and keeps `video_path` if set even in image mode.
    raw.setdefault("total_chunks", 1)
    raw["total_videos"] = raw.get("total_videos", 0)
    if not info.video_keys:
        raw["video_path"] = None
    for feature in raw["features"].values():
        names = feature.get("names")
        if isinstance(names, dict) and len(names) == 1:  # older exports: {"motors": [...]}
            feature["names"] = next(iter(names.values()))
    (staging / "meta" / "info.json").write_text(json.dumps(raw, indent=2))


def _write_staged_episode_stats(info: SourceInfo, staging: Path, dropped: set[str]) -> None:
    lines = []
    with open(info.root / "meta" / "episodes_stats.jsonl") as handle:
        for line in handle:
            if line.strip():
                item = json.loads(line)
                item["stats"] = {k: v for k, v in item["stats"].items() if k not in dropped}
                lines.append(json.dumps(item))
    (staging / "meta" / "episodes_stats.jsonl").write_text("\n".join(lines) + "\n")
