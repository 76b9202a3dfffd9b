#!/bin/bash
# One discover epoch under each thread setting, the settings taking turns (docs/results.md,
# section 7, threads). Prints each run's training seconds and the load average at its start.
#   benchmarks/threads.sh [CONFIG [STEPS [ROUNDS]]]
# SETTINGS (space-separated VAR=VALUE, or "default") overrides the settings compared.
set -euo pipefail
cfg=${1:-examples/lenet300-fashion.yaml}; steps=${2:-150}; rounds=${3:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq "$rounds"); do
  for setting in ${SETTINGS:-default OMP_WAIT_POLICY=ACTIVE OMP_NUM_THREADS=1 OMP_NUM_THREADS=2}; do
    rm -rf "$out/run"
    load=$(cut -d' ' -f1 /proc/loadavg)
    env $([ "$setting" = default ] || echo "$setting") .venv/bin/sltc discover "$cfg" --out "$out/run" \
      --set train.epochs=1 --set train.max_steps="$steps" --set data.val_size=1000 --json \
      2>/dev/null | tail -1 | python3 -c "import json, sys; d = json.load(sys.stdin); print(
        'round $round, $setting, load $load:', round(d['train_seconds'], 2), 's, test accuracy',
        d['test_accuracy'])"
  done
done
