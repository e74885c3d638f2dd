"""``python -m artemis.cli`` runs the ``artemis`` command."""

import sys

from artemis.cli import main

sys.exit(main())
