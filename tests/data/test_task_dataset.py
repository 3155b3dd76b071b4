"""TaskDataset against plain lerobot: same action chunks, same image values, smaller video frames."""

import pytest
import torch

from kuavo_train.data.ingest import ingest_dataset
from kuavo_train.data.schema import FeatureSchema, TaskFeatures
from kuavo_train.data.task_dataset import TaskDataset
from kuavo_train.data.video import torchcodec_problem
from kuavo_train.demo.synthetic_data import SyntheticTaskSpec, write_synthetic_task
from kuavo_train.evaluation.validate import make_loader
from kuavo_train.policy.loss import prepare_batch
from tests.conftest import skip_unless_required

CAMERAS = ("observation.images.head_cam_h", "observation.images.wrist_cam_l", "observation.images.wrist_cam_r")
CHUNK = 5
EPISODES = [0, 2]


def build(tmp_path, video: bool, backend: str = "pyav"):
    spec = SyntheticTaskSpec(task_id=1, instruction="Grasp the part", action_dim=16)
    source = write_synthetic_task(tmp_path / "src", spec, num_episodes=3, min_len=8, max_len=11, image_hw=(24, 32),
                                  video=video)
    root = ingest_dataset(source, tmp_path / "cache")
    task = TaskFeatures(task_id=1, name="grasp", instruction=spec.instruction, state_dim=16, action_dim=16)
    schema = FeatureSchema(cameras={c: (3, 24, 32) for c in CAMERAS}, state_dim=16, action_dim=20, fps=10.0, tasks=(task,))
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


def test_video_frames_leave_the_dataset_as_uint8(tmp_path):
    _, dataset = build(tmp_path, video=True)
    item = dataset[3]
    assert {item[camera].dtype for camera in CAMERAS} == {torch.uint8}


def test_forked_workers_decode_the_same_frames_after_the_parent_did(tmp_path, backend):
    _, dataset = build(tmp_path, video=True, backend=backend)
    expected = [dataset[i] for i in range(len(dataset))]  # the parent now holds open decoders
    seen = 0
    for batch in make_loader(dataset, batch_size=4, num_workers=2):
        for row in range(len(batch["sample_seed"])):
            index = int(batch["sample_seed"][row]) - 1 * 10_000_000
            for camera in CAMERAS:
                assert torch.equal(batch[camera][row], expected[index][camera]), (index, camera)
            seen += 1
    assert seen == len(dataset)
