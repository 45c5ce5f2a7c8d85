#!/usr/bin/env bash
# Session 12, run 8 (H100): the final kernels (commit in BUILD_INFO): the full GPU forward matrix
# (the warp-specialised union cases first; default selected tiles take the two-kernel schedule), then
# the backward matrix (the selected dQ kernel's union build changed: count by atomics).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON=$out/fwd_full.jsonl timeout 430 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > $out/fwd_full.log 2>&1
echo "fwd full rc=$?"; grep -c "\] PASS" $out/fwd_full.log; grep "\] FAIL" $out/fwd_full.log | head; tail -4 $out/fwd_full.log | cut -c1-200
xz -9 $out/fwd_full.jsonl; xz -9 $out/fwd_full.log
timeout 135 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.MatrixAgainstReference' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -c " PASS " $out/gpu-bwd.log; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-bwd.log" | head -8 | cut -c1-200
