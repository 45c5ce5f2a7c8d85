#!/usr/bin/env bash
# Session 13, run 2 (H100): the selected dQ two-kernel schedule (commit in BUILD_INFO): the
# backward matrix (its two-kernel cases included), then the default selected forward + backward
# at T = 64k with the schedules off and on, random and local indices, [main] and [paper] head dims.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 240 $W/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference' > $out/bwd.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/bwd.log; grep "\] FAIL" $out/bwd.log | head; tail -2 $out/bwd.log
for two in 0 1; do for dk in 128 192; do
  NSAJIT_SELECTED_TWO_KERNEL=$two timeout 60 python3 bench/sweep_tiles.py --branch selected --T 65536 --dk $dk --backward --tiles 0x0x0 2>&1 | sed "s/^/two=$two dk=$dk /" | tee -a $out/sweep.log
done; done
