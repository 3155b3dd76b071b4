"""On-disk cache of a task dataset's image embeddings, for training with a frozen vision side.

When SmolVLA's vision encoder (and, for the deeper level, its connector) is frozen and images are
not augmented, the embedding of a frame's camera image is the same in every epoch and every stage.
The cache stores it once per (frame, camera) and the loader reads it instead of decoding video.

One cache per task dataset and key, under ``<data.cache_dir>/features/<dataset>/<key digest>/``:

- ``key.json``: what the embeddings depend on (`FeatureCacheKey`): the dataset's content
  fingerprint, the cameras and their image shapes, the level ("vision": SigLIP's output,
  "connector": after SmolVLM's connector), a hash of the weights that compute it, the resize with
  padding, and the dtype. Anything else gives another digest, so another cache.
- ``<camera>.npy``: (rows, tokens, dim) embeddings, memory-mapped; rows are the dataset's global
  frame indices (one row, the blank image's, for a camera the task's data lacks).
- ``done.npy``: (frames,) bool, which rows hold a finished embedding. Rows are written, flushed,
  then marked done by an atomic replace of this file: a crash mid-build leaves rows that are not
  marked, which the next build computes again; a row marked done is always complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from kuavo_train.data.constants import CAMERA_PREFIX
from kuavo_train.errors import KuavoError
from kuavo_train.files import write_json_atomically

CACHE_FORMAT_VERSION = 1
KEY_FILE = "key.json"
DONE_FILE = "done.npy"
BLANK_DONE_FILE = "blank.done"  # written after the blank rows are flushed
# Storage dtype per torch dtype: numpy has no bfloat16, so its bits are kept as uint16.
_STORED_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}


@dataclass(frozen=True)
class FeatureCacheKey:
    """Everything that changes a cached embedding."""

    dataset: str  # content fingerprint of the (v3.0) dataset
    cameras: dict[str, tuple[int, int, int]]  # camera -> (C, H, W) of the images embedded
    blank_cameras: tuple[str, ...]  # cameras the task's data lacks (one row: the blank image's embedding)
    level: str  # "vision" or "connector"
    weights: str  # sha256 of the weights computing the embedding
    resize: tuple[int, int]  # SmolVLA's resize_imgs_with_padding (width, height)
    dtype: str  # torch dtype name of the stored embeddings
    tokens: int  # embedding shape per image: (tokens, dim)
    dim: int
    # How it was computed: device type, autocast dtype, TF32, the video decoder and the library versions (a bf16 or
    # TF32 embedding differs from an fp32 one by more than fp tolerance, even where the stored dtype is the same).
    compute: str = ""
    version: int = CACHE_FORMAT_VERSION

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def itemsize(self) -> int:
        return np.dtype(_STORED_DTYPES[self.dtype]).itemsize

    def bytes_per_frame(self) -> int:
        """Disk bytes of one frame's rows (the real cameras')."""
        real = len(self.cameras) - len(self.blank_cameras)
        return real * self.tokens * self.dim * self.itemsize()


def camera_file_name(camera: str) -> str:
    return camera.removeprefix(CAMERA_PREFIX) + ".npy"


class FeatureCache:
    """A task dataset's cached embeddings (see the module doc). Picklable: each loader worker maps the
    files itself on its first read."""

    def __init__(self, directory: Path, key: FeatureCacheKey, frames: int):
        self.directory, self.key, self.frames = Path(directory), key, frames
        self._arrays: dict[str, np.ndarray] | None = None  # read-only maps, opened on the first read
        self._done_at_open: tuple[np.ndarray, bool] | None = None  # (done rows, blank rows done) at the first read
        self._writers: dict[str, np.ndarray] = {}
        self._pending = np.zeros(0, np.int64)  # frames written since the last commit

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None, "_done_at_open": None, "_writers": {}}

    # ---- creating and opening -----------------------------------------------------------------
    @classmethod
    def open_or_create(cls, root: Path, key: FeatureCacheKey, frames: int) -> FeatureCache:
        """The cache of ``key`` under ``root`` (``<cache_dir>/features/<dataset>/``), created empty (nothing
        done) when absent. The empty files are sparse: disk fills as rows are written. Created in a temp dir
        renamed into place: when another process creates it at the same moment, the first rename wins and the
        other opens that one (an existing cache is never replaced)."""
        directory = Path(root).expanduser() / key.digest()
        if not directory.exists():
            directory.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
            try:
                _create_files(tmp, key, frames)
                os.rename(tmp, directory)
            except OSError:
                if not directory.exists():
                    raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        cache = cls(directory, key, frames)
        cache._check_files()
        return cache

    def _check_files(self) -> None:
        try:
            saved = json.loads((self.directory / KEY_FILE).read_text())
            done = np.load(self.directory / DONE_FILE)
            shapes = {
                camera: np.load(self.directory / camera_file_name(camera), mmap_mode="r").shape
                for camera in self.key.cameras
            }
        except (OSError, ValueError) as exc:
            raise KuavoError(
                f"the image feature cache {self.directory} is unreadable ({type(exc).__name__}: {exc}); "
                "delete that folder and it is built again"
            ) from exc
        expected = {camera: (self.rows(camera), self.key.tokens, self.key.dim) for camera in self.key.cameras}
        if (
            saved != json.loads(json.dumps(asdict(self.key), default=list))
            or done.shape != (self.frames,)
            or (shapes != expected)
        ):
            raise KuavoError(
                f"the image feature cache {self.directory} does not match its key (another version wrote it, or "
                "it was edited); delete that folder and it is built again"
            )

    def rows(self, camera: str) -> int:
        return 1 if camera in self.key.blank_cameras else self.frames

    # ---- state --------------------------------------------------------------------------------
    def done(self) -> np.ndarray:
        """(frames,) bool: rows of real cameras that hold a finished embedding."""
        return np.load(self.directory / DONE_FILE)

    def blank_done(self) -> bool:
        return (self.directory / BLANK_DONE_FILE).is_file()

    def missing(self, frame_indices: np.ndarray) -> np.ndarray:
        """The global frame indices of ``frame_indices`` that are not cached yet."""
        frame_indices = np.asarray(frame_indices, dtype=np.int64)
        return frame_indices[~self.done()[frame_indices]]

    def _check_done(self, frame_index: int) -> None:
        done, blank_done = self._done_at_open
        if not done[frame_index] or (self.key.blank_cameras and not blank_done):
            raise KuavoError(
                f"the image feature cache {self.directory} has no embedding of frame {frame_index}, which this "
                "stage reads (it was built for other frames); set data.feature_cache=off or delete that folder"
            )

    # ---- writing ------------------------------------------------------------------------------
    def write(self, frame_indices: np.ndarray, embeddings: dict[str, torch.Tensor]) -> None:
        """Store the embeddings (B, tokens, dim) of the real cameras for the frames ``frame_indices`` (B,);
        they count as cached after `commit`."""
        for camera, values in embeddings.items():
            self._writable(camera)[np.asarray(frame_indices)] = _to_numpy(values, self.key.dtype)
        self._pending = np.concatenate([self._pending, np.asarray(frame_indices, dtype=np.int64)])

    def write_blank(self, embeddings: dict[str, torch.Tensor]) -> None:
        """The blank image's embedding (1, tokens, dim) of each camera the task lacks."""
        for camera, values in embeddings.items():
            array = self._writable(camera)
            array[0:1] = _to_numpy(values, self.key.dtype)
            array.flush()
        (self.directory / BLANK_DONE_FILE).touch()

    def commit(self) -> None:
        """Flush the written rows to disk, then mark them done (atomic replace of done.npy)."""
        if not len(self._pending):
            return
        for array in self._writers.values():
            array.flush()
        done = self.done()
        done[self._pending] = True
        tmp = self.directory / f".{DONE_FILE}.tmp-{os.getpid()}"
        with open(tmp, "wb") as handle:
            np.save(handle, done)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.directory / DONE_FILE)
        self._pending = np.zeros(0, np.int64)

    def _writable(self, camera: str) -> np.ndarray:
        if camera not in self._writers:
            self._writers[camera] = np.load(self.directory / camera_file_name(camera), mmap_mode="r+")
        return self._writers[camera]

    # ---- reading ------------------------------------------------------------------------------
    def read(self, frame_index: int) -> dict[str, torch.Tensor]:
        """camera -> (tokens, dim) embedding of one frame (the blank row for a camera the task lacks)."""
        if self._arrays is None:
            self._arrays = {
                camera: np.load(self.directory / camera_file_name(camera), mmap_mode="r") for camera in self.key.cameras
            }
            self._done_at_open = (self.done(), self.blank_done())
        self._check_done(frame_index)
        return {
            camera: _to_torch(array[0 if camera in self.key.blank_cameras else frame_index], self.key.dtype)
            for camera, array in self._arrays.items()
        }

    def size_bytes(self) -> int:
        return self.frames * self.key.bytes_per_frame()


def _create_files(directory: Path, key: FeatureCacheKey, frames: int) -> None:
    stored = _STORED_DTYPES[key.dtype]
    for camera in key.cameras:
        rows = 1 if camera in key.blank_cameras else frames
        np.lib.format.open_memmap(
            directory / camera_file_name(camera), mode="w+", dtype=stored, shape=(rows, key.tokens, key.dim)
        )
    np.save(directory / DONE_FILE, np.zeros(frames, dtype=bool))
    write_json_atomically(directory / KEY_FILE, asdict(key))


def _to_numpy(values: torch.Tensor, dtype: str) -> np.ndarray:
    values = values.detach().to("cpu", getattr(torch, dtype)).contiguous()
    if dtype == "bfloat16":
        return values.view(torch.int16).numpy().view(np.uint16)
    return values.numpy()


def _to_torch(row: np.ndarray, dtype: str) -> torch.Tensor:
    tensor = torch.from_numpy(np.array(row))  # a copy: the map stays read-only and pages can be dropped
    return tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor


def cached_frames_like(root: Path, key: FeatureCacheKey, frames: int) -> np.ndarray:
    """(frames,) bool: frames done in any cache under ``root`` (one dataset) whose key equals ``key`` except for
    the weights and the compute: what the plan, which builds no model to hash, expects a stage not to compute."""
    done = np.zeros(frames, dtype=bool)
    loose = {**asdict(key), "weights": None, "compute": None}
    for key_file in Path(root).expanduser().glob(f"*/{KEY_FILE}"):
        try:
            saved = json.loads(key_file.read_text())
            rows = np.load(key_file.parent / DONE_FILE)
        except (OSError, ValueError):
            continue
        same = {**saved, "weights": None, "compute": None} == json.loads(json.dumps(loose, default=list))
        if same and rows.shape == done.shape:
            done |= rows
    return done


def feature_cache_root(cache_dir: str | Path, dataset: str) -> Path:
    return Path(cache_dir).expanduser() / "features" / dataset
