"""The first benchmark: pyce vs the NumPy reference vs PyTorch (and JAX when
installed) at 64x1000 and 4096x32000 float32, forward and fused forward+backward,
with the memory-bandwidth floor measured in the same run.

    python benchmarks/bench_cross_entropy.py                 # the table
    python benchmarks/bench_cross_entropy.py --json out.json # plus every raw number

Extra arguments go to ``pyce bench`` (see ``pyce bench --help``) and override
the defaults below. The NumPy reference runs at 4096x32000 too here (it takes a
few seconds a call and several GB of float64 temporaries), unlike in
``pyce bench``, which skips it above 50M elements.

Run it with the installed pyce: from this checkout, ``python benchmarks/...``
puts ``benchmarks/`` (not the checkout) on ``sys.path``, so the source tree's
uncompiled ``pyce/`` does not shadow it.
"""

from __future__ import annotations

import sys

DEFAULTS = [
    "--shapes",
    "64x1000,4096x32000",
    "--dtypes",
    "float32",
    "--ops",
    "forward,fused,inplace",
    "--reference-limit",
    "0",
]


def main(argv=None) -> int:
    from pyce.bench import main as bench_main

    argv = list(sys.argv[1:] if argv is None else argv)
    # argparse keeps the last value of a repeated option: the caller's win.
    return bench_main(DEFAULTS + argv, prog="bench_cross_entropy.py")


if __name__ == "__main__":
    sys.exit(main())
