#!/usr/bin/env bash
# The prepared device check for a lent GPU machine (benchmarks/results/README.md, "GPU"): CUDA
# correctness tests, then GPU training timings. It uses the machine's own python3 (PyTorch with
# CUDA) and runs softbits from src/ without installing, since nothing can be fetched there.
# Everything lands in $OUT (default gpu_out/): nvidia-smi.txt, test_cuda.log, training_cuda_*.json.
#
#   bash scripts/gpu_check.sh            # about 2-4 minutes on an H100
set -uo pipefail
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
failed=0

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >> "$OUT/nvidia-smi.txt"
if ! "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0))" \
        > "$OUT/torch.txt" 2>&1; then
    echo "no CUDA device visible to torch:"; tail -1 "$OUT/torch.txt"; exit 1
fi
cat "$OUT/torch.txt"

# CUDA correctness: fails loudly if the tests were skipped (no CUDA seen by torch)
"$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
grep -q "skipped" "$OUT/test_cuda.log" && { echo "CUDA tests were skipped" | tee -a "$OUT/test_cuda.log"; failed=1; }

# GPU timings: Bw-SQ epoch vs bare MLP epoch, narrow and wide nets (variants interleaved)
for shape in "3 128" "5 512" "10 2048"; do
    set -- $shape
    "$PY" benchmarks/bench_training.py --device cuda --layers "$1" --neurons "$2" --repeats 5 \
        --out "$OUT/training_cuda_fried_${1}x${2}.json" 2>&1 | tee -a "$OUT/bench_training.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
done
exit "$failed"
