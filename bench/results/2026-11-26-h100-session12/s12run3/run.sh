#!/usr/bin/env bash
# Session 12, run 3 (H100): the selected forward's two-kernel schedule (commit in BUILD_INFO):
# the quick forward matrix (the default selected cases now run both kernels; the explicit
# warp-specialised union tiles), the default forward with the schedule on and off on random and
# local indices ([main] and [paper] head dims), and the benchmark (nsajit and cuDNN).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_QUICK=1 NSAJIT_GPU_TEST_JSON=$out/fwd_quick.jsonl timeout 200 $W/nsajit/bin/gpu_tests --gtest_filter='GpuForward.MatrixAgainstReference' > $out/fwd_quick.log 2>&1
echo "fwd quick rc=$?"; grep -c PASS $out/fwd_quick.log; grep FAIL $out/fwd_quick.log | head; tail -3 $out/fwd_quick.log
for two in 0 1; do for dk in 128 192; do
  NSAJIT_SELECTED_TWO_KERNEL=$two timeout 100 python3 bench/sweep_tiles.py --branch selected --T 65536 --dk $dk --tiles 0x0x0 --out $out/sweep_two${two}_dk$dk.json 2>&1 | sed "s/^/two=$two dk=$dk /" | tee -a $out/sweep.log
done; done
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
timeout 330 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn" --max-minutes 5 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -iE "target|MET|MISS|nsa |selected" $out/bench.log | tail -30
