#!/usr/bin/env bash
# HTNet as its paper trains it (htnet_official: lr 5e-5, batch 256, 800 epochs), leave one
# subject out on the MEGC2019 composite, on one CUDA GPU, both protocols (honest and as the
# official script) in OUT/metrics.json.
#
#   bash scripts/gpu_htnet_official.sh ROOT OUT [SHARDS] [extra train.htnet flags...]
#
# ROOT: a clone of the HTNet repository or a folder in its layout (../shared/real/htnet-megc2019).
# One fold is 370 samples of 28x28: a single process leaves a big GPU mostly idle, so SHARDS
# (default 8) processes train every SHARDS-th fold side by side, then one process pools the
# 68 folds and trains the final model. No resume state is written (--checkpoint-every 0: an
# optimizer state of ~140M parameters per epoch would cost more than the epoch); an
# interrupted run keeps its finished folds: run the script again.
# Extra flags override the defaults (the last one wins), e.g. `--epochs 1 --device cpu` for a
# dry run. Not yet run on a GPU.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: bash scripts/gpu_htnet_official.sh ROOT OUT [SHARDS] [train.htnet flags...]" >&2
    exit 2
fi
root=$1
out=$2
shift 2
shards=8
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    shards=$1
    shift
fi
if [[ $shards -lt 1 ]]; then
    echo "SHARDS must be 1 or more, got $shards" >&2
    exit 2
fi
python=${PYTHON:-python3}
flags=(--dataset megc2019 --root "$root" --loso --preset htnet_official --lr 5e-5 --batch-size 256
    --epochs 800 --checkpoint-every 0 --device cuda --threads 1 --out "$out" "$@")

mkdir -p "$out"
start=$(date +%s)
pids=()
for k in $(seq 1 "$shards"); do
    "$python" -m train.htnet "${flags[@]}" --shard "$k/$shards" >"$out/shard$k.log" 2>&1 &
    pids+=($!)
done
failed=0
for k in $(seq 1 "$shards"); do
    if ! wait "${pids[$((k - 1))]}"; then
        echo "shard $k/$shards failed: $(tail -n 1 "$out/shard$k.log")" >&2
        failed=1
    fi
done
if [[ $failed -ne 0 ]]; then
    echo "finished folds are kept in $out; run the same command again to redo the others" >&2
    exit 1
fi
echo "folds: $(($(date +%s) - start)) s for $shards shards"
"$python" -m train.htnet "${flags[@]}" --resume
echo "total: $(($(date +%s) - start)) s; results in $out/metrics.json"
