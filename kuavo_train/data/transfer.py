"""Batches cross from loader workers to the trainer as one shared-memory buffer.

A DataLoader worker hands every tensor of a batch over through its own shared-memory segment and
file descriptor, and the trainer pays a fixed cost per segment to receive them (9 tensors per batch
here). Packing the batch into one buffer in
the worker makes it one segment; the trainer gets views into it, pinned in one copy on CUDA.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate
from torch.utils.data._utils.pin_memory import pin_memory

_ALIGN = (
    16  # byte offset of every tensor in the buffer: a multiple of every dtype's size, so each can be viewed in place
)


@dataclass(frozen=True)
class PackedBatch:
    buffer: torch.Tensor  # uint8, all tensors of the batch back to back
    layout: tuple[tuple[str, torch.dtype, tuple[int, ...], int], ...]  # (key, dtype, shape, byte offset)
    others: dict  # the values that are not tensors (instruction strings), as default_collate makes them
    keys: tuple[str, ...]  # the samples' key order

    def pin_memory(self) -> PackedBatch:  # called by the DataLoader's pin-memory thread
        return PackedBatch(self.buffer.pin_memory(), self.layout, pin_memory(self.others), self.keys)

    def unpack(self) -> dict:
        values = dict(self.others)
        for key, dtype, shape, offset in self.layout:
            nbytes = math.prod(shape) * dtype.itemsize
            values[key] = self.buffer[offset : offset + nbytes].view(dtype).view(shape)
        return {key: values[key] for key in self.keys}


def pack_collate(samples: list[dict]) -> PackedBatch:
    """``default_collate`` of dict samples, with every tensor stacked straight into one buffer."""
    first = samples[0]
    columns = {key: _tensor_column([s[key] for s in samples]) for key in first}
    tensors = {key: column for key, column in columns.items() if column is not None}
    others = default_collate([{k: s[k] for k in first if k not in tensors} for s in samples])
    layout, size = [], 0
    for key, column in tensors.items():
        shape = (len(samples), *column[0].shape)
        layout.append((key, column[0].dtype, shape, size))
        size += -(-math.prod(shape) * column[0].dtype.itemsize // _ALIGN) * _ALIGN
    buffer = torch.empty(size, dtype=torch.uint8)
    if torch.utils.data.get_worker_info() is not None:
        buffer.share_memory_()  # allocate it where the queue will send it: saves a copy
    packed = PackedBatch(buffer, tuple(layout), others, tuple(first))
    views = packed.unpack()
    for key, column in tensors.items():
        torch.stack(column, out=views[key])
    return packed


class SharedBufferLoader(DataLoader):
    """A DataLoader whose batches travel as ``PackedBatch`` and come out as plain dicts."""

    def __init__(self, dataset, **kwargs):
        super().__init__(dataset, collate_fn=pack_collate, **kwargs)

    def __iter__(self):
        return (packed.unpack() for packed in super().__iter__())


def _tensor_column(values: list) -> list[torch.Tensor] | None:
    """The values as tensors when default_collate would stack them into one (tensors, ints, floats)."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return values
    if isinstance(first, (bool, int)):
        return [torch.tensor(v) for v in values]
    if isinstance(first, float):
        return [torch.tensor(v, dtype=torch.float64) for v in values]
    return None


SHM_DIR = "/dev/shm"
PREFETCH_FACTOR = 2  # batches each loader worker keeps ready (make_loader)


def batch_bytes(schema, batch_size: int, chunk_size: int, camera_bytes: int | None = None) -> int:
    """Bytes of one training batch in its shared buffer: uint8 cameras (or ``camera_bytes`` per sample: the cached
    image embeddings), fp32 state and action chunk, masks."""
    per_sample = sum(math.prod(shape) for shape in schema.cameras.values()) if camera_bytes is None else camera_bytes
    per_sample += 4 * schema.state_dim + 4 * chunk_size * schema.action_dim + chunk_size + schema.action_dim + 3 * 8
    return batch_size * per_sample


def shared_memory_need(
    schema, batch_size: int, chunk_size: int, num_workers: int, camera_bytes: int | None = None
) -> int:
    """Bytes of /dev/shm the loader workers fill at most. Workers are persistent: the training loader's keep their
    prefetched batches (PREFETCH_FACTOR each) while a validation loader's fill theirs, plus one batch in use.
    ``batch_size`` is the global batch: every process's workers share the machine's /dev/shm. ``camera_bytes``:
    a sample's image embeddings when the feature cache replaces the images (the larger of the two counts)."""
    batches = num_workers * 2 * PREFETCH_FACTOR + 1
    largest = max(
        batch_bytes(schema, batch_size, chunk_size), batch_bytes(schema, batch_size, chunk_size, camera_bytes or 0)
    )
    return 0 if num_workers == 0 else largest * batches


def shared_memory_free() -> int | None:
    try:
        return shutil.disk_usage(SHM_DIR).free
    except OSError:
        return None  # not Linux, or no /dev/shm: torch uses another mechanism


def shared_memory_problem(need: int, free: int | None) -> str | None:
    """Why the loader workers would crash (bus error / 'unable to write to file </torch_...>'), or None."""
    if need == 0 or free is None or free >= need:
        return None
    return (
        f"{SHM_DIR} has {free / 2**20:.0f} MiB free but the loader workers need about {need / 2**20:.0f} MiB "
        f"(training.num_workers x {2 * PREFETCH_FACTOR} batches + 1); in Docker start the container with "
        f"--shm-size={max(2, math.ceil(2 * need / 2**30))}g (or --ipc=host), or lower training.num_workers "
        "(0 = no shared memory) or training.batch_size"
    )
