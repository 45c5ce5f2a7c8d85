#!/usr/bin/env bash
# Runs on the GPU machine: unpacks the self-contained build made by
# scripts/pack-gpu-build.sh, tunes the benchmark configurations' forward kernels
# (nsajit tune, into a fresh tuning database), runs the benchmark against SDPA /
# FlexAttention / the PyTorch reference, and the training check. Logs and JSON go
# into OUT_DIR.
#   [NSAJIT_BENCH_ARGS="..."] scripts/gpu-bench.sh OUT_DIR [--quick] [--no-train] [--no-tune]
set -uo pipefail
out="${1:?usage: gpu-bench.sh OUT_DIR [--quick] [--no-train] [--no-tune]}"
shift
quick="" train=1 tune=1
for a in "$@"; do
  case "$a" in
    --quick) quick="--quick" ;;
    --no-train) train=0 ;;
    --no-tune) tune=0 ;;
    *) echo "gpu-bench: unknown option $a" >&2; exit 2 ;;
  esac
done
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out"
work="$(mktemp -d)"
tar -C "$work" -xJf "$root/.carry/nsajit-gpu.tar.xz"
export NSAJIT_LIBRARY="$work/nsajit/lib/libnsajit.so"
export NSAJIT_CACHE_DIR="$work/cache"
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$work/nsajit/BUILD_INFO")"
bin="$work/nsajit/bin"
status=0
{
  echo "== date: $(date -u +%FT%TZ)"
  cat "$work/nsajit/BUILD_INFO"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  "$bin/nsajit" info
} 2>&1 | tee "$out/bench-info.log"

if [ "$tune" = 1 ]; then
  echo "== nsajit tune (the benchmark's head configurations, T = 65536)"
  {
    "$bin/nsajit" tune --T 65536 --heads 4 --group 16 --dk 128 --dv 128 --l 64 --d 64 --lsel 64 --n 16 --w 512 --repeats 10
    "$bin/nsajit" tune --T 65536 --heads 4 --group 16 --dk 192 --dv 128 --l 32 --d 16 --lsel 64 --n 16 --w 512 --repeats 10
  } 2>&1 | tee "$out/tune.log" || status=1
  cp "$NSAJIT_CACHE_DIR"/tuning/*.tsv "$out/" 2>/dev/null
fi

echo "== bench/bench_nsa.py $quick"
# NSAJIT_BENCH_ARGS: more bench_nsa.py options, e.g. "--groups-T 64k --max-minutes 6".
python3 "$root/bench/bench_nsa.py" $quick ${NSAJIT_BENCH_ARGS:-} --out "$out/bench.json" --png "$out/bench.png" 2>&1 | tee "$out/bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

if [ "$train" = 1 ]; then
  echo "== training check (bench/train/train_nsa.py)"
  python3 "$root/bench/train/train_nsa.py" --out "$out/train_nsa.json" 2>&1 | tee "$out/train.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  python3 "$root/bench/train/plot_curves.py" "$out/train_nsa.json" --png "$out/train_nsa.png" 2>&1 | tee -a "$out/train.log"
fi
echo "== gpu-bench status: $status" | tee -a "$out/bench-info.log"
exit $status
