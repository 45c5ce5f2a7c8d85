#!/usr/bin/env bash
# Session 10, run 8 (H100): selected forward tiles on the swizzled K/V (Dk = 128 and 192, random
# and local indices), then the backward's split and index-scan walks on the swizzled sm_90a tiles.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
{
timeout 150 python3 bench/sweep_tiles.py --branch selected --dk 128 --tiles 0x0x0,1x1x32,1x1x64,2x2x32,2x2x64,4x4x64,8x8x32
timeout 120 python3 bench/sweep_tiles.py --branch selected --dk 192 --tiles 0x0x0,1x1x32,1x1x64,4x4x32,2x2x64
} > "$out/sweep-selected.log" 2>&1
grep -oE '"indices": "[a-z]+"|"tile": \[[0-9, ]+\]|"fwd_ms": [0-9.a-z]+' "$out/sweep-selected.log" | paste - - - | awk 'NR<=14{print "dk128", $0} NR>14{print "dk192", $0}'
timeout 250 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.SplitWalks*:GpuBackward.IndexScan*' > "$out/gpu-bwd-walks.log" 2>&1
echo "gpu bwd walks rc=$?"; grep -E " FAIL |PASSED|FAILED|cases|OK \]" "$out/gpu-bwd-walks.log" | head -8 | cut -c1-200
