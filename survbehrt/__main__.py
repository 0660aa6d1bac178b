"""``python -m survbehrt`` runs the command line (see :mod:`survbehrt.cli`)."""

import sys

from .cli import main

sys.exit(main())
