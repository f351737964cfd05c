"""``python -m subdistill`` (also what ``torchrun -m subdistill`` runs)."""

import sys

from .cli import main

sys.exit(main())
