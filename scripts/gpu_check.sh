#!/usr/bin/env bash
# The prepared device check for a lent GPU machine (benchmarks/results/README.md, "GPU"): CUDA
# correctness tests, stacked-training rates, cost-model calibration and protocol slices. It uses the
# machine's own python3 (PyTorch with CUDA) and runs softbits from src/ without installing, since
# nothing can be fetched there. Data: SOFTBITS_DATA_DIR (cpu_act, california) and SOFTBITS_REFERENCE
# (paper_results.csv). Every step has its own time limit, so one slow step cannot eat the others';
# everything lands in $OUT (default gpu_out/): at most 8 files, as the device tool returns no more.
#
#   bash scripts/gpu_check.sh                       # tests stack protocol (~6 min on an H200)
#   bash scripts/gpu_check.sh tests calibrate table  # any subset of: tests stack calibrate protocol table
set -uo pipefail
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
STEPS=" ${*:-tests stack protocol} "
LOG="$OUT/run.log"
failed=0
step() { echo "== $1 ($(date +%T))" | tee -a "$LOG"; }
wants() { [[ "$STEPS" == *" $1 "* ]]; }

nvidia-smi >> "$LOG" 2>&1 || echo "nvidia-smi failed" >> "$LOG"
if ! "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0))" \
        >> "$LOG" 2>&1; then
    echo "no CUDA device visible to torch:"; tail -1 "$LOG"; exit 1
fi
tail -1 "$LOG"

if wants tests; then
    step "CUDA correctness (fails loudly if the tests were skipped)"
    timeout 150 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log" | tail -3
    [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
    grep -q "skipped" "$OUT/test_cuda.log" && { echo "CUDA tests were skipped" | tee -a "$OUT/test_cuda.log"; failed=1; }
fi

cd benchmarks || exit 1
bench() { local limit=$1; shift; timeout "$limit" "$PY" bench_stack.py --device cuda --threads 1 "$@" >> "$LOG" 2>&1 || failed=1; }
if wants stack; then
    step "stacked vs one-at-a-time model-epochs per second (cpu_act, Bw-SQ 4 bits, 3 layers)"
    bench 100 --neurons 32 256 --members 64 256 1024 --epochs 3 --repeats 2 --max-seconds 20 --out "$OUT/stack_cuda_small.json"
    bench 70 --neurons 1024 --members 16 64 256 --epochs 3 --repeats 2 --max-seconds 20 --out "$OUT/stack_cuda_wide.json"
    bench 45 --layers 6 --neurons 4096 --members 2 --epochs 2 --repeats 1 --out "$OUT/stack_cuda_huge.json"
fi
if wants calibrate; then
    step "cost-model points for protocol_estimate.py: 8-bit quantizers, the widest nets, and TF32"
    bench 60 --bits 8 --neurons 32 256 --members 16 64 256 --epochs 2 --repeats 1 --max-seconds 15 --out "$OUT/stack_cuda_bits8.json"
    bench 60 --layers 10 --neurons 2048 8192 --members 2 --epochs 2 --repeats 1 --out "$OUT/stack_cuda_deep.json"
    bench 45 --layers 10 --neurons 2048 8192 --members 2 --epochs 2 --repeats 1 --tf32 --out "$OUT/stack_cuda_deep_tf32.json"
fi
if wants protocol; then
    step "protocol slice (b): california, Bw-SQ 4 bits at the paper's setting, 10 repeats"
    timeout 125 "$PY" bench_protocol_stack.py --slice paper --dataset california --repeats 10 --device cuda \
        --variants 1,1 1,auto --timeout 60 --out "$OUT/protocol_stack_cuda_california.json" >> "$LOG" 2>&1 || failed=1
    step "protocol slice (a): cpu_act K-fold search, Bw-SQ 4 bits, paper grid (a sample of its settings)"
    timeout 135 "$PY" bench_protocol_stack.py --slice search --dataset cpu_act --n-settings 6 --device cuda \
        --variants 1,1 1,auto --timeout 65 --out "$OUT/protocol_stack_cuda_cpuact.json" >> "$LOG" 2>&1 || failed=1
fi
cd ..
if wants table; then
    step "issue #11 table: cpu_act Bw-SQ and Bw-SQ-Ens at the paper's settings, bits 2-4, 10 repeats (store only)"
    timeout 150 "$PY" -m softbits reproduce --settings "$SOFTBITS_REFERENCE" --datasets cpu_act \
        --methods bw-sq,bw-sq-ens --bits 2-4 --repeats 10 --stack auto --device cuda --jobs 1 \
        --store "$OUT/table_cuda.sqlite" --out-dir /tmp/table_report --json >> "$LOG" 2>&1 || failed=1
fi
tail -c 2500 "$LOG"
exit "$failed"
