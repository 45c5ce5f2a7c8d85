#!/usr/bin/env bash
# Session 12, run 9 (H100): the union kernel stages a tile's Q only when it computes the tile
# (commit in BUILD_INFO): the quick forward matrix, the default selected forward with the two-kernel
# schedule off and on, random and local indices, [main] and [paper] head dims.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_QUICK=1 timeout 100 $W/nsajit/bin/gpu_tests --gtest_filter='GpuForward.MatrixAgainstReference' > $out/fwd_quick.log 2>&1
echo "fwd quick rc=$?"; grep -c "\] PASS" $out/fwd_quick.log; grep "\] FAIL" $out/fwd_quick.log | head; tail -2 $out/fwd_quick.log
for two in 0 1; do for dk in 128 192; do
  NSAJIT_SELECTED_TWO_KERNEL=$two timeout 45 python3 bench/sweep_tiles.py --branch selected --T 65536 --dk $dk --tiles 0x0x0 2>&1 | sed "s/^/two=$two dk=$dk /" | tee -a $out/sweep.log
done; done
