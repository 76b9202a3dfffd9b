#!/usr/bin/env bash
# CRBG against edge-popup at a longer budget on one GPU: ResNet-20 at 50% and 90% and the
# ViT at 90%, EPOCHS epochs each, every run side by side on the one GPU; and CRBG on
# ResNet-20 at 90% with the gate learning rate that won on Conv-4 at a short budget (0.05).
#
#   bash benchmarks/gpu_pareto.sh OUT [EPOCHS] [DATA]      # docs/results.md section 9
#
# Writes OUT/pareto.json and OUT/pareto.png (both models), OUT/machine.json, and, while it
# runs, OUT/progress.jsonl: every run's finished epochs (so a run cut short still says how
# far it got); OUT/lr005.json: the summary of the learning-rate run. Run directories go to
# ${RUNS:-/tmp/sltc-gpu-runs}; EXTRA adds options to every run, DEVICE (cuda) picks the device.
set -euo pipefail
out=${1:?usage: gpu_pareto.sh OUT [EPOCHS] [DATA]}
epochs=${2:-20}
data=${3:-.data/fashion-mnist}
runs=${RUNS:-/tmp/sltc-gpu-runs}
extra=(${EXTRA:-})
mkdir -p "$out" "$runs"

snapshot() {  # the epochs each run has finished, one JSON line per epoch
  for m in "$runs"/*/metrics.jsonl; do
    [ -e "$m" ] || continue
    sed "s/^{/{\"run\": \"$(basename "$(dirname "$m")")\", /" "$m"
  done > "$out/progress.jsonl.tmp" && mv "$out/progress.jsonl.tmp" "$out/progress.jsonl"
}

common=(--device "${DEVICE:-cuda}" --seeds 0 --epochs "$epochs" --out "$out" --runs "$runs"
        --set "data.root=$data" "${extra[@]}")
python3 benchmarks/pareto.py --models resnet20 --methods crbg,edge_popup --targets 0.5,0.9 \
    --workers 4 "${common[@]}" &
resnet=$!
python3 benchmarks/pareto.py --models vit --methods crbg,edge_popup --targets 0.9 \
    --workers 2 "${common[@]}" &
vit=$!
OMP_NUM_THREADS=1 python3 -m sltc.cli discover examples/resnet20-fashion.yaml --json \
    --out "$runs/resnet20-crbg-0.9-0-lr0.05" --device "${DEVICE:-cuda}" --set train.lr=0.05 \
    --set "train.epochs=$epochs" --set data.val_size=1000 --set "data.root=$data" \
    "${extra[@]}" > "$out/lr005.json" &
lr=$!
while kill -0 "$resnet" 2>/dev/null || kill -0 "$vit" 2>/dev/null || kill -0 "$lr" 2>/dev/null
do
  snapshot
  sleep 15
done
snapshot
wait "$resnet"
wait "$vit"
wait "$lr"
