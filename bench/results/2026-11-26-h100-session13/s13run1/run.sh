#!/usr/bin/env bash
# Session 13, run 1 (H100): the selected dQ kernel's wgmma union tile (commit in BUILD_INFO):
# the backward matrix (its new union-tile cases included), then the selected forward + backward
# at T = 64k over tiles (0x0x0: default; 8x8x64: the wgmma dQ union of 8 tokens; 4x4x64: of 4),
# random and local indices, [main] and [paper] head dims.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 $W/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference' > $out/bwd.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/bwd.log; grep "\] FAIL" $out/bwd.log | head; tail -2 $out/bwd.log
for dk in 128 192; do
  timeout 120 python3 bench/sweep_tiles.py --branch selected --T 65536 --dk $dk --backward --tiles 0x0x0,8x8x64,4x4x64 2>&1 | sed "s/^/dk=$dk /" | tee -a $out/sweep.log
done
