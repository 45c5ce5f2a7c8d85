#!/usr/bin/env bash
# Session 11, run 6 (H100): the warp-specialised dense forward as the default (commit afc86ef):
# the full GPU forward matrix, then the dense kernels' forward and forward + backward timings.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 460 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-full.log" 2>&1
echo "gpu fwd full rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-full.log" | head -8 | cut -c1-200
R=$W/ref; mkdir -p $R
for m in fwd fb; do timeout 60 python3 .carry/fwd_variants.py ref $R $m 2>&1 | grep -v "^JSON" | tee -a "$out/variants.log"; done
