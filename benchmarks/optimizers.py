"""Optimizer overhead: the share of a small GPT's training step spent in AdamW, Muon, Scion.

    python benchmarks/optimizers.py            # widths 128/256/512, JSON in benchmarks/results/
    python benchmarks/optimizers.py --fast     # seconds

Same as ``optimal-scaling bench optim``; see :func:`optimal_scaling.bench.optimizer_benchmark`.
"""

import sys

from optimal_scaling.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "optim", *sys.argv[1:]]))
