#!/usr/bin/env bash
# Session 5, run 9 (H100): final build: GPU tests, then the benchmark at T = 64k (nsajit, SDPA cuDNN, FlexAttention, compile times), profiled.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_BWD=$out/gpu-bwd.jsonl NSAJIT_GPU_TEST_JSON_BWD_SPLIT=$out/gpu-bwd-split.jsonl \
  timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-bwd.log" | head -12 | cut -c1-220
NSAJIT_GPU_TEST_QUICK=1 timeout 60 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*:GpuTopN.*:GpuCompress.*' > "$out/gpu-other-quick.log" 2>&1
echo "gpu fwd/topn/compress quick rc=$?"; grep -E " FAIL |passed|failed" "$out/gpu-other-quick.log" | head -8 | cut -c1-200
timeout 390 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,flex,compile" --max-minutes 5.5 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[" "$out/bench.log" | cut -c1-140
