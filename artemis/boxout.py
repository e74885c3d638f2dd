"""Deprecated: box output moved to :mod:`artemis.tasks.box_output` (and its prompt strings to
:mod:`artemis.prompts`); this alias goes in the next release."""

import warnings

from artemis.prompts import box_output_vocabulary as boxout_vocabulary  # noqa: F401
from artemis.prompts import format_box_answer as format_answer  # noqa: F401
from artemis.prompts import normalize_expression, rsot_question, sot_question  # noqa: F401
from artemis.tasks.box_output import *  # noqa: F403
from artemis.tasks.box_output import BoxStatus

GIVEN, PREDICTED, UNPARSED, INVALID = (int(status) for status in BoxStatus)

warnings.warn(
    "artemis.boxout is now artemis.tasks.box_output (prompts in artemis.prompts); update the import",
    DeprecationWarning,
    stacklevel=2,
)
