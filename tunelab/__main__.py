"""`python -m tunelab ...` (what `accelerate launch -m tunelab train CONFIG` and torchrun run)."""

import sys

from tunelab.cli import main

sys.exit(main())
