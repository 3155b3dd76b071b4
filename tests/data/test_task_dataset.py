"""TaskDataset against plain lerobot: same action chunks, same image values, smaller video frames."""

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from kuavo_train.data.ingest import ingest_dataset
from kuavo_train.data.schema import FeatureSchema, TaskFeatures
from kuavo_train.data.task_dataset import _SEED_STRIDE, TaskDataset
from kuavo_train.data.video import torchcodec_problem
from kuavo_train.demo.synthetic import SyntheticTaskSpec, write_synthetic_task
from kuavo_train.evaluation.validate import make_loader
from kuavo_train.policy.loss import prepare_batch
from tests.conftest import skip_unless_required

CAMERAS = ("observation.images.head_cam_h", "observation.images.wrist_cam_l", "observation.images.wrist_cam_r")
CHUNK = 5
EPISODES = [0, 2]


def build(tmp_path, video: bool, backend: str = "pyav", task_id: int = 1):
    spec = SyntheticTaskSpec(task_id=task_id, instruction=f"Grasp part {task_id}", action_dim=16)
    source = write_synthetic_task(
        tmp_path / f"src{task_id}", spec, num_episodes=3, min_len=8, max_len=11, image_hw=(24, 32), video=video
    )
    root = ingest_dataset(source, tmp_path / "cache")
    task = TaskFeatures(
        task_id=task_id, name=f"grasp{task_id}", instruction=spec.instruction, state_dim=16, action_dim=16
    )
    schema = FeatureSchema(
        cameras={c: (3, 24, 32) for c in CAMERAS}, state_dim=16, action_dim=20, fps=10.0, tasks=(task,)
    )
    return root, TaskDataset(root, task, schema, EPISODES, CHUNK, video_backend=backend)


def reference(root, fps: float = 10.0):
    """lerobot's own reading: delta_timestamps for the chunk, float frames from pyav."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    deltas = {"action": [i / fps for i in range(CHUNK)]}
    return LeRobotDataset("kuavo/ref", root=root, episodes=EPISODES, delta_timestamps=deltas, video_backend="pyav")


def as_float_images(item: dict) -> dict:
    """The item's images as a batch of one, as the training step sees them."""
    images = {k: v[None] for k, v in item.items() if k.startswith("observation.images.")}
    return prepare_batch(images, lambda b: b, torch.device("cpu"))[0]


@pytest.fixture(params=["pyav", "torchcodec"])
def backend(request):
    if request.param == "torchcodec":
        problem = torchcodec_problem()
        skip_unless_required(None if problem is None else f"torchcodec cannot load FFmpeg: {problem}")
    return request.param


@pytest.mark.parametrize("video", [False, True], ids=["image-in-parquet", "video"])
def test_items_match_lerobot_delta_timestamps(tmp_path, video, backend):
    root, dataset = build(tmp_path, video, backend)
    ref = reference(root)
    assert len(dataset) == len(ref)
    for index in range(len(dataset)):
        ours, theirs = dataset[index], ref[index]
        assert torch.equal(ours["action"][:, :16], theirs["action"]), index
        assert torch.equal(ours["action"][:, 16:], torch.zeros(CHUNK, 4)), index
        assert torch.equal(ours["action_is_pad"], theirs["action_is_pad"]), index
        images = as_float_images(ours)
        for camera in CAMERAS:
            assert images[camera].dtype == torch.float32
            assert torch.equal(images[camera][0], theirs[camera]), (index, camera)


@pytest.mark.parametrize("workers", [0, 2])
def test_png_and_mp4_tasks_mix_in_one_batch_as_uint8(tmp_path, workers):
    _, png = build(tmp_path, video=False, task_id=1)
    _, mp4 = build(tmp_path, video=True, task_id=2)
    mixed = ConcatDataset([png, mp4])
    order = [0, len(png), 1, len(png) + 1]  # PNG first, then mp4, alternating
    batch = next(iter(make_loader(mixed, batch_size=4, num_workers=workers, shuffle_sampler=order)))
    for camera in CAMERAS:
        assert batch[camera].dtype == torch.uint8
        for row, index in enumerate(order):
            assert torch.equal(batch[camera][row], mixed[index][camera])


def test_forked_children_do_not_inherit_open_torchcodec_decoders(tmp_path):
    skip_unless_required(
        None if torchcodec_problem() is None else f"torchcodec cannot load FFmpeg: {torchcodec_problem()}"
    )
    from lerobot.datasets import video_utils

    _, dataset = build(tmp_path, video=True, backend="torchcodec")
    dataset[0]
    assert video_utils._default_decoder_cache.size() > 0  # the parent holds open decoders now
    seen_by_worker = next(iter(DataLoader(DecoderCacheSize(), num_workers=1)))
    assert seen_by_worker.tolist() == [0]


class DecoderCacheSize(Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        from lerobot.datasets import video_utils

        return video_utils._default_decoder_cache.size()


def test_forked_workers_decode_the_same_frames_after_the_parent_did(tmp_path, backend):
    _, dataset = build(tmp_path, video=True, backend=backend)
    expected = [dataset[i] for i in range(len(dataset))]  # the parent now holds open decoders
    seen = 0
    for batch in make_loader(dataset, batch_size=4, num_workers=2):
        for row in range(len(batch["sample_seed"])):
            index = int(batch["sample_seed"][row]) - 1 * _SEED_STRIDE  # task id 1
            for camera in CAMERAS:
                assert torch.equal(batch[camera][row], expected[index][camera]), (index, camera)
            seen += 1
    assert seen == len(dataset)
