#!/usr/bin/env bash
# Session 11, run 11 (H100): the final commit (in BUILD_INFO; its kernels are those of afc86ef):
# the GPU backward matrix, whose cases run the warp-specialised forward first, and the top-n suite.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 300 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.MatrixAgainstReference' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-bwd.log" | head -8 | cut -c1-200
timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*' > "$out/gpu-topn.log" 2>&1
echo "gpu topn rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-topn.log" | head -8 | cut -c1-200
