"""The sweep engine's overhead on a 30-second run, and the laptop GPT's tokens/s (eager vs
``torch.compile``), each against a reference measured in the same run.

    python benchmarks/sweep.py            # about 5 minutes; JSON in benchmarks/results/
    python benchmarks/sweep.py --fast     # about half a minute

Same as ``optimal-scaling bench sweep``; see :mod:`optimal_scaling.sweep.benchmark`.
"""

import sys

from optimal_scaling.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "sweep", *sys.argv[1:]]))
