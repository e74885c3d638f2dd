"""Deprecated: the box-output training dataset is :mod:`artemis.data.box_output_dataset`; this alias goes in
the next release."""

import warnings

from artemis.data.box_output_dataset import *  # noqa: F403
from artemis.data.box_output_dataset import read_record_frames  # noqa: F401

warnings.warn(
    "artemis.data.boxout is now artemis.data.box_output_dataset; update the import", DeprecationWarning, stacklevel=2
)
