"""``python -m callbacks_demo`` runs the demo."""

import sys

from .cli import main

sys.exit(main())
