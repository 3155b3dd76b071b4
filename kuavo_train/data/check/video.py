"""Checks of the camera frames: video files present and decodable, first stored image decodable, frame sizes."""

from __future__ import annotations

from pathlib import Path

from kuavo_train.data.check.layout import Episode
from kuavo_train.data.check.messages import error_text, listing, unreadable
from kuavo_train.data.check.report import CameraSummary, DatasetReport
from kuavo_train.data.source import SourceInfo

_DEFAULT_V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
_DEFAULT_V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


# --------------------------------------------------------------------------------------------
# Video files
# --------------------------------------------------------------------------------------------


def check_videos(info: SourceInfo, report: DatasetReport, episodes: dict[int, Episode]) -> None:
    """Every expected video file exists and is not empty; the first one of each camera opens as a video."""
    for key, files in _video_paths(info, episodes).items():
        if not files:
            report.problems.append(
                f"{info.root / 'meta' / 'episodes'}: no video file is listed for {key}; re-export the dataset"
            )
            continue
        missing = [(p, eps) for p, eps in files.items() if not p.is_file()]
        empty = [p for p in files if p.is_file() and p.stat().st_size == 0]
        if missing:
            path, eps = missing[0]
            more = f" (and {len(missing) - 1} more file(s))" if len(missing) > 1 else ""
            report.problems.append(
                f"{path}: video file of {key} for episode(s) {listing(eps)} is missing{more}; copy the "
                "videos/ folder of the export next to data/ or re-export the dataset"
            )
        for path in empty:
            report.problems.append(f"{path}: video file is empty; re-export the videos of this episode")
        present = [p for p in files if p.is_file() and p.stat().st_size > 0]
        if present:
            _probe_video(report, key, present[0])


def _video_paths(info: SourceInfo, episodes: dict[int, Episode]) -> dict[str, dict[Path, list[int]]]:
    """Per video key: expected video file -> the episodes stored in it."""
    if info.version == "v2.1":
        return _v21_video_paths(info, episodes)
    return _v30_video_paths(info, episodes)


def _v21_video_paths(info: SourceInfo, episodes: dict[int, Episode]) -> dict[str, dict[Path, list[int]]]:
    out: dict[str, dict[Path, list[int]]] = {}
    template = info.raw_info.get("video_path") or _DEFAULT_V21_VIDEO_PATH
    chunks_size = int(info.raw_info.get("chunks_size") or 1000)
    for key in info.video_keys:
        files = out.setdefault(key, {})
        for index in sorted(episodes) or range(info.total_episodes):
            fields_ = {"episode_chunk": index // chunks_size, "video_key": key, "episode_index": index}
            files.setdefault(info.root / _format_path(template, _DEFAULT_V21_VIDEO_PATH, fields_), []).append(index)
    return out


def _v30_video_paths(info: SourceInfo, episodes: dict[int, Episode]) -> dict[str, dict[Path, list[int]]]:
    out: dict[str, dict[Path, list[int]]] = {}
    template = info.raw_info.get("video_path") or _DEFAULT_V30_VIDEO_PATH
    for key in info.video_keys:
        files = out.setdefault(key, {})
        for index, episode in sorted(episodes.items()):
            if key not in episode.videos:
                continue
            chunk, file = episode.videos[key]
            fields_ = {"video_key": key, "chunk_index": chunk, "file_index": file}
            files.setdefault(info.root / _format_path(template, _DEFAULT_V30_VIDEO_PATH, fields_), []).append(index)
    return out


def _format_path(template: str, default: str, fields_: dict) -> str:
    """``template`` filled in; the lerobot default layout when the dataset's own template does not fit."""
    try:
        return template.format(**fields_)
    except (KeyError, IndexError, ValueError):
        return default.format(**fields_)


def _probe_video(report: DatasetReport, key: str, path: Path) -> None:
    camera = next(c for c in report.cameras if c.key == key)
    try:
        import av

        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            height, width = stream.codec_context.height, stream.codec_context.width
            codec = stream.codec_context.name
    except Exception as exc:
        report.problems.append(
            f"{path}: cannot be opened as a video ({error_text(exc)}); re-export the videos of this episode"
        )
        return
    camera.codec = camera.codec or codec
    _check_frame_size(report, camera, height, width, found=f"{path}: video frames", declared_for=f" for {key}")


# --------------------------------------------------------------------------------------------
# Images stored in the parquet files
# --------------------------------------------------------------------------------------------


def check_first_frames(info: SourceInfo, report: DatasetReport) -> None:
    """Decode the first stored image of each image-mode camera (catches unreadable PNG/JPEG bytes)."""
    image_cams = [c for c in report.cameras if c.storage == "image"]
    readable = [p for p in info.data_files if str(p) not in report.unreadable_files]
    if not image_cams or not readable:
        return
    path = readable[0]
    for camera in image_cams:
        try:
            cell = _first_cell(path, camera.key)
        except _NoColumn:
            continue  # reported with the data files
        except Exception as exc:
            report.problems.append(unreadable(path, exc, "re-export this episode"))
            return
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if data is None:
            where = cell.get("path") if isinstance(cell, dict) else None
            report.notes.append(
                f"{path}: {camera.key} frames hold no image bytes"
                + (f" (only a path: {where})" if where else "")
                + "; lerobot needs the images embedded in the parquet files"
            )
            continue
        try:
            height, width = _image_size(data)
        except Exception as exc:
            report.problems.append(
                f"{path}: the first {camera.key} image cannot be decoded ({type(exc).__name__}); re-export this episode"
            )
            continue
        _check_frame_size(report, camera, height, width, found=f"{path}: {camera.key} images")


class _NoColumn(Exception):
    """The data file has no column for the camera."""


def _first_cell(path: Path, key: str):
    """The first value of column ``key`` of a parquet file (None for an empty file)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if key not in parquet.schema_arrow.names:
        raise _NoColumn(key)
    batch = next(parquet.iter_batches(batch_size=1, columns=[key]), None)
    return batch.column(0)[0].as_py() if batch is not None and batch.num_rows else None


def _image_size(data: bytes) -> tuple[int, int]:
    """(height, width) of encoded image bytes, decoding them fully."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        width, height = image.size
    return height, width


# --------------------------------------------------------------------------------------------
# Frame sizes
# --------------------------------------------------------------------------------------------


def _check_frame_size(
    report: DatasetReport, camera: CameraSummary, height: int, width: int, *, found: str, declared_for: str = ""
) -> None:
    """Take a decoded frame's size as the camera's when meta/info.json declares none; note one that differs."""
    if camera.height is None:
        camera.height, camera.width = height, width
    elif (height, width) != (camera.height, camera.width):
        report.notes.append(
            f"{found} are {height}x{width} but meta/info.json declares "
            f"{camera.height}x{camera.width}{declared_for} (images are resized for the policy anyway)"
        )
