#!/usr/bin/env bash
# Session 6, run 9 (H100): correctness of the final code: backward (map, split, index scan; selected dQ
# union of 2 tokens by default, a third per token), top-n, quick forward and compression, the Python GPU
# tests (the gated-combine kernel bit-for-bit, nsa_attention on it).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_BWD=$out/gpu-bwd.jsonl NSAJIT_GPU_TEST_JSON_BWD_SPLIT=$out/gpu-bwd-split.jsonl NSAJIT_GPU_TEST_JSON_BWD_SCAN=$out/gpu-bwd-scan.jsonl \
  timeout 200 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-bwd.log" | head -16 | cut -c1-220
NSAJIT_GPU_TEST_JSON_TOPN=$out/gpu-topn.jsonl timeout 100 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*' > "$out/gpu-topn.log" 2>&1
echo "gpu topn rc=$?"; grep -E " FAIL |passed|failed" "$out/gpu-topn.log" | head -8 | cut -c1-200
NSAJIT_GPU_TEST_QUICK=1 timeout 80 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*:GpuCompress.*' > "$out/gpu-fwd-quick.log" 2>&1
echo "gpu fwd/compress quick rc=$?"; grep -E " FAIL |passed|failed" "$out/gpu-fwd-quick.log" | head -8 | cut -c1-200
timeout 270 python3 -m pytest -q -rs python/tests -p no:cacheprovider > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "SKIPPED|FAILED|passed|failed" "$out/pytest.log" | tail -8 | cut -c1-250
