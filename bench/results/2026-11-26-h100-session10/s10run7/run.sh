#!/usr/bin/env bash
# Session 10, run 7 (H100): swizzled K/V for the mma.sync forward (every arch) and the sm_90a
# mma.sync backward (commit in BUILD_INFO): quick forward matrix, backward matrix, and the selected
# and NSA timings.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_QUICK=1 timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick.log" 2>&1
echo "gpu fwd quick rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick.log" | head -5 | cut -c1-200
timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.Matrix*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-bwd.log" | head -5 | cut -c1-200
timeout 200 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit selected random [main],nsajit selected local [main],nsajit selected local per-token [main],nsajit nsa fused [paper],nsajit nsa local [paper]" --no-compile-test --no-png --max-minutes 3 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|kernels" "$out/bench.log" | grep -v ceiling | cut -c1-150
