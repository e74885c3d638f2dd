"""Deprecated: the referring dataset is :mod:`artemis.data.referring_dataset`; this alias goes in the next
release."""

import warnings

from artemis.data.entries import load_entries  # noqa: F401
from artemis.data.records import KINDS, RecordEntry  # noqa: F401
from artemis.data.referring_dataset import *  # noqa: F403
from artemis.data.referring_dataset import EpochCallback, ReferringDataset  # noqa: F401

warnings.warn(
    "artemis.data.dataset is now artemis.data.referring_dataset; update the import", DeprecationWarning, stacklevel=2
)
