#!/usr/bin/env bash
# Session 9, run 8 (H100): correctness of the final kernels: the full GPU forward matrix (2160
# cases) and the backward matrix (automatic split).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 430 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-full.log" 2>&1
echo "gpu fwd full rc=$?"; grep -E " FAIL |PASSED|FAILED|cases|OK \]" "$out/gpu-fwd-full.log" | head -8 | cut -c1-200; grep -c " PASS " "$out/gpu-fwd-full.log"
timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.Matrix*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |PASSED|FAILED|cases|OK \]" "$out/gpu-bwd.log" | head -5 | cut -c1-200
