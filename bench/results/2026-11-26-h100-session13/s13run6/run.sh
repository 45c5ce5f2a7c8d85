#!/usr/bin/env bash
# Session 13, run 6 (H100): the Python GPU tests (autograd through the dQ two-kernel schedule)
# and the backward matrix with split dK/dV walks, on the commit in BUILD_INFO.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 python3 -m pytest -q -x python/tests > $out/pytest_gpu.log 2>&1; echo "pytest rc=$?"; tail -2 $out/pytest_gpu.log
timeout 200 $W/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.SplitWalksAgainstReference' > $out/bwd_split.log 2>&1
echo "bwd split rc=$?"; grep -c "\] PASS" $out/bwd_split.log; grep "\] FAIL" $out/bwd_split.log | head; tail -2 $out/bwd_split.log
