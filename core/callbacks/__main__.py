"""``python -m callbacks`` runs the ``callbacks`` command."""

import sys

from .cli import main

sys.exit(main())
