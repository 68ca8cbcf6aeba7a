"""Newton–Schulz benchmark: the package against a plain reference, in one run.

    python benchmarks/newton_schulz.py            # full shapes, JSON in benchmarks/results/
    python benchmarks/newton_schulz.py --fast     # seconds
    python benchmarks/newton_schulz.py --device cuda --dtype bfloat16

Same as ``optimal-scaling bench ns``; the methods and the FLOP count are described in
:mod:`optimal_scaling.bench`.
"""

import sys

from optimal_scaling.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "ns", *sys.argv[1:]]))
