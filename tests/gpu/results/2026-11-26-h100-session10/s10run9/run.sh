#!/usr/bin/env bash
# Session 10, run 9 (H100): the full GPU forward matrix and the Python GPU tests on the final
# kernels (commit in BUILD_INFO).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 440 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-full.log" 2>&1
echo "gpu fwd full rc=$?"; grep -E " FAIL |PASSED|FAILED|cases|total\)" "$out/gpu-fwd-full.log" | head -8 | cut -c1-200
timeout 145 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "nsa_attention or combine or topn or gated or prepare or cache or selected or window or compressed" > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest.log" | tail -6 | cut -c1-250
