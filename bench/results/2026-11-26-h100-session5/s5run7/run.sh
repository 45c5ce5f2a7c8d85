#!/usr/bin/env bash
# Session 5, run 7: run 6 with the G = 1 slot read fixed and the selected dq on one buffer: backward tests, quick forward matrix, then the profiled bench.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_BWD=$out/gpu-bwd.jsonl NSAJIT_GPU_TEST_JSON_BWD_SPLIT=$out/gpu-bwd-split.jsonl \
  timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-bwd.log" | head -12 | cut -c1-220
NSAJIT_GPU_TEST_QUICK=1 timeout 60 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*:GpuTopN.*:GpuCompress.*' > "$out/gpu-other-quick.log" 2>&1
echo "gpu fwd/topn/compress quick rc=$?"; grep -E " FAIL |passed|failed" "$out/gpu-other-quick.log" | head -8 | cut -c1-200
timeout 400 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit selected random [main],nsajit selected local [main],nsajit nsa,sdpa-cudnn dense [paper],nsajit cmp32/16+top16 [paper],nsajit window" --no-compile-test --no-png --max-minutes 6.2 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|kernels:" "$out/bench.log" | cut -c1-330
