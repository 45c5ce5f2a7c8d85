#!/usr/bin/env bash
# Session 17, run 5 (H100): the final code (commit in BUILD_INFO): the benchmark's rows against the
# targets of issue 4 (bench_nsa.py --quick, T = 64k, with each kernel's time), the quick forward
# matrix and the Python GPU tests.
out="$1"; mkdir -p "$out"
W=/tmp/nsajit; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
timeout 260 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,compile" --max-minutes 4 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "PASS|MISS|not measured" $out/bench.log | tail -14
NSAJIT_GPU_TEST_QUICK=1 timeout 80 $W/nsajit/bin/gpu_tests --gtest_filter='GpuForward.*' > $out/fwd_quick.log 2>&1
echo "fwd rc=$?"; grep -c " PASS " $out/fwd_quick.log; grep " FAIL " $out/fwd_quick.log | head -5; grep -E "^\[  (PASSED|FAILED)" $out/fwd_quick.log
timeout 150 python3 -m pytest -q -x python/tests > $out/pytest_gpu.log 2>&1; echo "pytest rc=$?"; tail -2 $out/pytest_gpu.log
