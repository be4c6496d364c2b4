#!/usr/bin/env bash
# The GPU figures in about 10 minutes on one GPU (docs/performance.md and docs/training/own-painting.md):
#   1. the CUDA tests (tests/test_cuda.py; skipped without a GPU)
#   2. benchmarks/bench.py on CUDA in bf16 (training steps/s, inference latency)
#   3. experiment=johnson2016 on the shared photos for as many steps as TRAIN_MINUTES (5) allow
#      (bf16-mixed, callbacks.time_budget), then
#   4. fast-nst quality (python -m fast_nst quality) on that network: equivalent L-BFGS iterations on 8 held-out photos at 256 px.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --tiny     # the same steps on the CPU at toy sizes (~3 min): checks the script
#
# Environment: OUT (default outputs/gpu_check), PHOTOS (training photos; default: BSDS500 train+val and
# the ImageNet sample of shared/data/photos, linked into $OUT/photos), HELDOUT (quality photos; default
# BSDS500 test), VGG (loss-network weights; default shared/weights/vgg16_features.safetensors, which
# needs no download), TRAIN_MINUTES (5). Everything lands in $OUT; summary.txt has the figures.
set -uo pipefail   # a failed step is logged and the next one still runs
cd "$(dirname "$0")/.."
TINY=0
[ "${1:-}" = "--tiny" ] && TINY=1
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
SHARED=""
for d in shared ../shared; do [ -d "$d/data/photos" ] && SHARED=$d && break; done
if [ -z "${VGG:-}" ]; then
  VGG=oxford
  for f in shared/weights/vgg16_features.safetensors ../shared/weights/vgg16_features.safetensors; do
    [ -f "$f" ] && VGG=$(realpath "$f") && break
  done
fi
if [ -z "${PHOTOS:-}" ]; then
  if [ -n "$SHARED" ]; then
    PHOTOS="$OUT/photos"   # training photos without the held-out BSDS500 test set
    mkdir -p "$PHOTOS"
    for sub in bsds500/train bsds500/val imagenet_sample; do
      mkdir -p "$PHOTOS/$sub"
      find "$(realpath "$SHARED/data/photos/$sub")" -maxdepth 1 -type f -exec ln -sf -t "$PHOTOS/$sub" {} +
    done
  else
    PHOTOS=assets/photos
  fi
fi
HELDOUT=${HELDOUT:-${SHARED:+$SHARED/data/photos/bsds500/test}}
HELDOUT=${HELDOUT:-assets/photos}
TRAIN_MINUTES=${TRAIN_MINUTES:-5}
PY=${PYTHON:-python}
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"
log "tiny=$TINY photos=$PHOTOS heldout=$HELDOUT vgg=$VGG out=$OUT"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee -a "$OUT/summary.txt"

if [ $TINY = 1 ]; then
  LIMIT=3600   # seconds per step unit: a shared CPU may be slow; the GPU run keeps to ~10 minutes
  DEVICE=cpu; PREC=32; TRAIN_MINUTES=0.1; SIZE=64; NPHOTOS=2; ITERS=10
  BENCH=(--quick --device cpu --profiles fast)
  TRAIN=(data.image_size=64 data.batch_size=2 data.num_workers=0 model.width=0.25 loss.style_size=128)
else
  LIMIT=60
  DEVICE=cuda; PREC=bf16-mixed; SIZE=256; NPHOTOS=8; ITERS=300
  BENCH=(--device cuda --profiles fast-bf16 --train-sizes 256 --sizes 512,1024 --steps 20)
  TRAIN=(data.num_workers=8)
fi

log "1/4 CUDA tests"
FAST_NST_TEST_WEIGHTS=$(dirname "$VGG") timeout $((LIMIT * 2)) $PY -m pytest -q tests/test_cuda.py -p no:cacheprovider \
  > "$OUT/tests.log" 2>&1 || log "CUDA tests failed (exit $?): see $OUT/tests.log"
tail -2 "$OUT/tests.log" | tee -a "$OUT/summary.txt"

log "2/4 bench (${BENCH[*]})"
timeout $((LIMIT * 3)) $PY benchmarks/bench.py "${BENCH[@]}" --vgg-weights "$VGG" --out "$OUT/bench.json" > "$OUT/bench.log" 2>&1 \
  || log "bench failed or timed out: see $OUT/bench.log"
tail -15 "$OUT/bench.log" >> "$OUT/summary.txt" || true

log "3/4 experiment=johnson2016 for $TRAIN_MINUTES min ($PREC)"
timeout $(( ${TRAIN_MINUTES%.*} * 60 + LIMIT * 3 )) $PY train.py experiment=johnson2016 data=folder "data.root=$PHOTOS" \
  trainer.precision=$PREC "callbacks.time_budget.minutes=$TRAIN_MINUTES" logger=csv name=gpu_johnson2016 \
  "export.dir=$OUT" "hydra.run.dir=$OUT/run" "loss_net.weights=$VGG" "${TRAIN[@]}" > "$OUT/train.log" 2>&1 \
  || log "training failed (exit $?): see $OUT/train.log"
grep -E "time budget|exported" "$OUT/train.log" | tee -a "$OUT/summary.txt" || true

log "4/4 quality of the 5-minute network ($NPHOTOS held-out photos at $SIZE px, L-BFGS budget $ITERS)"
timeout $((LIMIT * 4)) $PY -m fast_nst quality "ckpt=$OUT/gpu_johnson2016.safetensors" "photos=$HELDOUT" num_photos=$NPHOTOS \
  size=$SIZE iterations=$ITERS "report_at=[$(( ITERS / 2 ))]" device=$DEVICE "output=$OUT/quality" \
  "cache_dir=$OUT/lbfgs_curves" > "$OUT/quality.log" 2>&1 || log "quality failed (exit $?): see $OUT/quality.log"
grep -E "equivalent L-BFGS|network:" "$OUT/quality.log" | tee -a "$OUT/summary.txt" || true
log "done: $OUT/summary.txt"
