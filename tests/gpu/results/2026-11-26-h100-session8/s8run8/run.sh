#!/usr/bin/env bash
# Session 8, run 8 (H100): the full GPU forward matrix (every branch, dtype, head dim, group, both
# architectures' kernels) on the final kernels (one-fma softmax exponents), which s8run7 checked on
# the quick matrix only.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 400 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd.log" 2>&1
echo "gpu fwd rc=$?"; grep -E " FAIL |PASSED|FAILED|passed|cases" "$out/gpu-fwd.log" | head -12 | cut -c1-220
tail -2 "$out/gpu-fwd.log" | cut -c1-200
