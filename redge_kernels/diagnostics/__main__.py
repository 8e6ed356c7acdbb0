"""``python -m redge_kernels.diagnostics``: see ``cli``."""

import sys

from .cli import main

sys.exit(main())
