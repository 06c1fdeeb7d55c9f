"""``python -m callbacks`` runs the ``callbacks`` command."""

import sys

from ._cli import main

sys.exit(main())
