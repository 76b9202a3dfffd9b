#!/usr/bin/env bash
# CRBG against edge-popup at a longer budget on one GPU, each with its recipe of today's
# defaults: ResNet-20 and the ViT at 50%, 90% and 95%, seeds 0 and 1, EPOCHS epochs each,
# the runs side by side on the one GPU.
#
#   bash benchmarks/gpu_pareto.sh OUT [EPOCHS] [DATA]      # docs/results.md sections 9, 10
#
# Writes OUT/pareto.json and OUT/pareto.png (both models), OUT/machine.json, and, while it
# runs, OUT/progress.jsonl: every run's finished epochs (so a run cut short still says how
# far it got). Run directories go to ${RUNS:-/tmp/sltc-gpu-runs}; EXTRA adds options to
# every run, DEVICE (cuda) picks the device, WORKERS (6) how many runs of a model share it.
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

common=(--device "${DEVICE:-cuda}" --seeds 0,1 --targets 0.5,0.9,0.95 --epochs "$epochs"
        --methods crbg,edge_popup --workers "${WORKERS:-6}" --out "$out" --runs "$runs"
        --set "data.root=$data" "${extra[@]}")
python3 benchmarks/pareto.py --models resnet20 "${common[@]}" &
resnet=$!
python3 benchmarks/pareto.py --models vit "${common[@]}" &
vit=$!
while kill -0 "$resnet" 2>/dev/null || kill -0 "$vit" 2>/dev/null
do
  snapshot
  sleep 15
done
snapshot
wait "$resnet"
wait "$vit"
