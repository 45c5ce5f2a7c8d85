#!/usr/bin/env bash
# Session 9, run 11 (H100): after the review (the forward's scores back in one commit-and-wait
# statement, codegen revision 31): the quick GPU forward matrix and the window / compressed
# forward timings of the benchmark.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_QUICK=1 timeout 90 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick.log" 2>&1
echo "gpu fwd quick rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick.log" | head -5 | cut -c1-200
timeout 150 python3 bench/bench_nsa.py --quick --T 64k --only "nsajit window,nsajit cmp" --no-compile-test --no-png --max-minutes 2 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[" "$out/bench.log" | grep -v ceiling | cut -c1-110
