#!/usr/bin/env bash
# Session 11, run 9 (H100): the full GPU forward matrix on the warp-specialised dense forward
# (commit in BUILD_INFO), given the whole call (s11run6 ran out of time at case 2078 of 2160).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 580 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-full.log" 2>&1
echo "gpu fwd full rc=$?"; grep -E " FAIL |PASSED|FAILED|cases|total\)" "$out/gpu-fwd-full.log" | head -8 | cut -c1-200
