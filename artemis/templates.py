"""Deprecated: the prompt strings moved to :mod:`artemis.prompts`; this alias goes in the next release."""

import warnings

from artemis.prompts import *  # noqa: F403 (the old namespace, kept for one release)

warnings.warn("artemis.templates is now artemis.prompts; update the import", DeprecationWarning, stacklevel=2)
