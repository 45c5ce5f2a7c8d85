#!/usr/bin/env bash
# Session 6, run 7 (H100): union schedule for the selected dQ: backward tests (a quarter forced sm_80), bench.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_BWD=$out/gpu-bwd.jsonl NSAJIT_GPU_TEST_JSON_BWD_SPLIT=$out/gpu-bwd-split.jsonl NSAJIT_GPU_TEST_JSON_BWD_SCAN=$out/gpu-bwd-scan.jsonl \
  timeout 200 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-bwd.log" | head -16 | cut -c1-220
timeout 300 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit nsa,nsajit selected,nsajit cmp64+top16+selected" --max-minutes 4.5 --no-png --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[" "$out/bench.log" | cut -c1-200
