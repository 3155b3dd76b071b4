"""`kuavo-train check-data`: inspect LeRobot dataset dirs (v2.1 Kuavo exports or v3.0) and report problems.

What is checked, without ever writing to the dataset:

* fatal defects (missing dir, no ``meta/info.json``, unsupported format version, no episodes) raise a
  one-line :class:`KuavoError` (from :func:`~kuavo_train.data.source.read_source_info`);
* per-file defects are collected as ``problems`` (one line each, naming the file and the fix):
  missing required camera, state/action size other than expected, unreadable (corrupt/truncated)
  parquet files, NaN/inf values in state/action, fps other than expected, missing video files,
  frame counts that disagree with the metadata;
* harmless findings are ``notes``: depth columns (dropped by default), a leftover ``images/`` folder,
  the dataset's own task strings differing from the training instruction, ...

Only the small columns of the data files are read (state, action, indices, timestamps), plus the first
frame of each camera, so checking hundreds of real episodes stays fast.

Modules: ``layout`` (metadata, episode lists, tasks), ``parquet`` (data files), ``video`` (camera frames),
``dataset`` (runs them on one dir / across dirs), ``report`` (results and their summary), ``main`` (the CLI).
"""

from kuavo_train.data.check.dataset import check_dataset, check_datasets, cross_check
from kuavo_train.data.check.main import check_data_main
from kuavo_train.data.check.report import CameraSummary, DatasetReport, FeatureSummary, LengthStats, format_report

__all__ = [
    "CameraSummary",
    "DatasetReport",
    "FeatureSummary",
    "LengthStats",
    "check_data_main",
    "check_dataset",
    "check_datasets",
    "cross_check",
    "format_report",
]
