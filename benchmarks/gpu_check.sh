#!/usr/bin/env bash
# The GPU session's one prepared script (issue 11): the GPU-facing tests, the kernels' tile
# configurations tuned, both benchmarks in bf16 with the tuned table, then the rest of the
# unit suite; results under $OUT (default: gpu_out/). Run from the repository root on a
# machine with torch, Triton, numpy, pandas, scipy and pytest:
#     make gpu-wheels                              # here, once: plotly and submitit in .whl/
#     OUT=/tmp/out bash benchmarks/gpu_check.sh    # there, with .whl carried along
# The notebook tests (jupytext, nbformat, Jupyter) are left out. Every phase has a time limit,
# about 585 s in all (run it with the device tool's timeout_s = 600); the benchmarks and the
# tuning write their JSON shape by shape (width by width), so a phase cut short still returns
# what it finished, and one method or configuration that fails loses only its own rows.
# Exactly seven files come back (the device tool returns at most eight): log.txt, pytest.txt,
# bench.txt and four JSONs.
set -uo pipefail
OUT="${OUT:-gpu_out}"
PY="${PYTHON:-python3}"  # the device image's python3 holds torch
export PYTHONUNBUFFERED=1  # a phase stopped at its limit keeps what it printed
mkdir -p "$OUT"
LOG="$OUT/log.txt"
BENCH="$OUT/bench.txt"
TESTS="$OUT/pytest.txt"
phase() { echo "== $1: exit $2 after $(( $(date +%s) - $3 )) s" | tee -a "$LOG"; }

start=$(date +%s)
if ls .whl/*.whl > /dev/null 2>&1; then  # packages the image lacks (plotly, submitit)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl >> "$LOG" 2>&1 && export PYTHONPATH=/tmp/site
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . >> "$LOG" 2>&1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # works even if the editable install did not
nvidia-smi >> "$LOG" 2>&1
"$PY" -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" \
    >> "$LOG" 2>&1
"$PY" -m pip list 2>/dev/null | grep -iE '^(numpy|pandas|scipy|einops|pytest|pytest-xdist|execnet|plotly|narwhals|submitit|triton|torch) ' >> "$LOG"
phase setup $? "$start"

# pytest: 8 xdist workers on the image's 16 cores (one process where xdist is missing), two
# BLAS threads each, -v so every result is on disk as it happens; SIGINT at the limit, so
# pytest still prints its summary and the failures (xdist needs up to ~15 s for that)
WORKERS=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 8" || echo "")
GPU_TESTS="tests/test_gpu.py tests/test_graphs.py tests/test_kernels.py tests/test_newton_schulz.py tests/test_optim.py tests/test_bench.py"
suite() {  # suite LIMIT ARGS...: one pytest call, appended to pytest.txt
    local limit=$1; shift
    OMP_NUM_THREADS=2 timeout -s INT -k 45 "$limit" "$PY" -m pytest -v -rfE -p no:cacheprovider \
        $WORKERS "$@" >> "$TESTS" 2>&1
}
start=$(date +%s)
echo "== the GPU-facing tests" >> "$TESTS"
suite 110 $GPU_TESTS
phase "pytest (GPU-facing tests)" $? "$start"

# The benchmarks run with the package's defaults (CUDA graphs on; the JSONs record the torch
# path's settings); `package_no_graphs` and gpu_variants.py time the same without them.
start=$(date +%s)
echo "== bench tune" >> "$BENCH"
timeout -k 10 45 "$PY" -m optimal_scaling.cli bench tune --dtype bfloat16 \
    --out "$OUT/kernel_configs_bfloat16.json" >> "$BENCH" 2>&1
phase "bench tune" $? "$start"
if [ -f "$OUT/kernel_configs_bfloat16.json" ]; then
    export OPTIMAL_SCALING_KERNEL_CONFIGS="$OUT/kernel_configs_bfloat16.json"
fi
start=$(date +%s)
echo "== bench ns" >> "$BENCH"
timeout -k 10 75 "$PY" -m optimal_scaling.cli bench ns --device cuda --dtype bfloat16 \
    --out "$OUT/newton_schulz_cuda_bfloat16_full.json" >> "$BENCH" 2>&1
phase "bench ns" $? "$start"
start=$(date +%s)
echo "== bench optim" >> "$BENCH"
timeout -k 10 40 "$PY" -m optimal_scaling.cli bench optim --device cuda \
    --out "$OUT/optimizers_cuda_full.json" >> "$BENCH" 2>&1
phase "bench optim" $? "$start"
start=$(date +%s)
echo "== row panels and CUDA graphs, one at a time" >> "$BENCH"
timeout -k 10 60 "$PY" benchmarks/gpu_variants.py --out "$OUT/gpu_variants.json" >> "$BENCH" 2>&1
phase "variants" $? "$start"
rm -f "$OUT"/.*.tmp  # a write cut short by a time limit

# the rest of the unit suite, after the timings (its sweeps would share the GPU with them);
# test_sweep.py first: its tests are the longest, and xdist hands out files in this order;
# --durations names the slowest (run 2 left 48 tests unreached in 150 s: which ones ran long?)
start=$(date +%s)
echo "== the rest of the unit suite" >> "$TESTS"
REST=$(ls tests/test_*.py | grep -vE "test_(lab|notebooks|exercises|sweep|gpu|graphs|kernels|newton_schulz|optim|bench)\.py")
suite 240 --durations=30 tests/test_sweep.py $REST
phase "pytest (the rest)" $? "$start"
pkill -f "optimal_scaling.cli sweep" 2>/dev/null; pkill -f "optimal_scaling.sweep.runner" 2>/dev/null
grep -E "^(==|=+ .*(passed|failed|error).* =+$)" "$TESTS"; tail -40 "$BENCH"; grep "^==" "$LOG"
