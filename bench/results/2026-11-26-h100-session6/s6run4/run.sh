#!/usr/bin/env bash
# Session 6, run 4 (H100): wgmma top-n: top-n tests (a fifth forced sm_80), quick forward, bench.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_TOPN=$out/gpu-topn.jsonl timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*' > "$out/gpu-topn.log" 2>&1
echo "gpu topn rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-topn.log" | head -12 | cut -c1-220
NSAJIT_GPU_TEST_QUICK=1 timeout 90 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*:GpuCompress.*' > "$out/gpu-fwd-quick.log" 2>&1
echo "gpu fwd/compress quick rc=$?"; grep -E " FAIL |passed|failed" "$out/gpu-fwd-quick.log" | head -8 | cut -c1-200
timeout 300 python3 bench/bench_nsa.py --quick --T 64k --profile --only "compile,nsajit nsa,nsajit cmp" --max-minutes 4.5 --no-png --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[" "$out/bench.log" | cut -c1-200
