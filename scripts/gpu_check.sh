#!/usr/bin/env bash
# The prepared device check for a lent GPU machine (benchmarks/results/README.md, "GPU"): CUDA
# correctness tests, then stacked-training rates and two protocol slices. It uses the machine's own
# python3 (PyTorch with CUDA) and runs softbits from src/ without installing, since nothing can be
# fetched there. Data: SOFTBITS_DATA_DIR (cpu_act, california) and SOFTBITS_REFERENCE
# (paper_results.csv). Every step has its own time limit, so one slow step cannot eat the others';
# everything lands in $OUT (default gpu_out/): 8 files at most (nvidia-smi.txt, test_cuda.log, run.log, JSON).
#
#   SOFTBITS_DATA_DIR=... SOFTBITS_REFERENCE=.../paper_results.csv bash scripts/gpu_check.sh   # ~7 min
set -uo pipefail
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
failed=0
step() { echo "== $1 ($(date +%T))"; }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >> "$OUT/nvidia-smi.txt"
if ! "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0))" \
        >> "$OUT/nvidia-smi.txt" 2>&1; then
    echo "no CUDA device visible to torch:"; tail -1 "$OUT/nvidia-smi.txt"; exit 1
fi
tail -1 "$OUT/nvidia-smi.txt"

step "CUDA correctness (fails loudly if the tests were skipped)"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log" | tail -5
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
grep -q "skipped" "$OUT/test_cuda.log" && { echo "CUDA tests were skipped" | tee -a "$OUT/test_cuda.log"; failed=1; }

cd benchmarks || exit 1
step "stacked vs one-at-a-time model-epochs per second (cpu_act, Bw-SQ 4 bits, 3 layers)"
timeout 100 "$PY" bench_stack.py --device cuda --threads 1 --neurons 32 256 --members 64 256 1024 \
    --epochs 3 --repeats 2 --max-seconds 20 --out "$OUT/stack_cuda_small.json" > "$OUT/run.log" 2>&1 || failed=1
timeout 70 "$PY" bench_stack.py --device cuda --threads 1 --neurons 1024 --members 16 64 256 \
    --epochs 3 --repeats 2 --max-seconds 20 --out "$OUT/stack_cuda_wide.json" >> "$OUT/run.log" 2>&1 || failed=1
timeout 45 "$PY" bench_stack.py --device cuda --threads 1 --layers 6 --neurons 4096 --members 2 \
    --epochs 2 --repeats 1 --out "$OUT/stack_cuda_huge.json" >> "$OUT/run.log" 2>&1 || failed=1
tail -c 1500 "$OUT/run.log"

step "protocol slice (b): california, Bw-SQ 4 bits at the paper's setting, 10 repeats"
timeout 125 "$PY" bench_protocol_stack.py --slice paper --dataset california --repeats 10 --device cuda \
    --variants 1,1 1,auto --timeout 60 --out "$OUT/protocol_stack_cuda_california.json" >> "$OUT/run.log" 2>&1 || failed=1
step "protocol slice (a): cpu_act K-fold search, Bw-SQ 4 bits, paper grid (a sample of its settings)"
timeout 135 "$PY" bench_protocol_stack.py --slice search --dataset cpu_act --n-settings 6 --device cuda \
    --variants 1,1 1,auto --timeout 65 --out "$OUT/protocol_stack_cuda_cpuact.json" >> "$OUT/run.log" 2>&1 || failed=1
tail -c 1500 "$OUT/run.log"
exit "$failed"
