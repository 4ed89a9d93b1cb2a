"""``python -m pyce.bench``: the same as ``pyce bench``."""

import sys

from .cli import main

sys.exit(main(prog="python -m pyce.bench"))
