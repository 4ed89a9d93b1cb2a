"""The fused linear cross-entropy (LM head) benchmark: ``pyce bench --suite linear`` as a script.

    python benchmarks/linear_cross_entropy.py                    # the three reference workloads
    python benchmarks/linear_cross_entropy.py --shapes 2048x512x32000 --rounds 3 --bfloat16
    python benchmarks/linear_cross_entropy.py --filter --memory --json linear.json

See pyce/bench/linear.py for what is timed (the three-GEMM floor on the same
BLAS, pyce's NumPy and PyTorch paths, PyTorch naive and chunked, Cut
Cross-Entropy when importable) and how (medians of interleaved rounds).
"""

import sys

from pyce.bench.linear import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="benchmarks/linear_cross_entropy.py"))
