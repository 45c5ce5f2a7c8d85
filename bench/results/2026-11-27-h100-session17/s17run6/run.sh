#!/usr/bin/env bash
# Session 17, run 6 (H100, the machine of run 5 still warm, its kernel cache in /tmp/nsajit/cache):
# the two checks s17run5 cut short at their time limits, rerun on the same build (d0354af): the
# quick forward matrix and the Python GPU tests. Run as one command line:
W=/tmp/nsajit; ls $W/cache | head -2
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
mkdir -p $OUT
NSAJIT_GPU_TEST_QUICK=1 timeout 80 $W/nsajit/bin/gpu_tests --gtest_filter='GpuForward.*' > $OUT/fwd_quick2.log 2>&1
echo "fwd rc=$?"; grep -c " PASS " $OUT/fwd_quick2.log; grep " FAIL " $OUT/fwd_quick2.log | head -5; grep -E "^\[  (PASSED|FAILED)" $OUT/fwd_quick2.log
timeout 110 python3 -m pytest -q -x python/tests > $OUT/pytest_gpu2.log 2>&1; echo "pytest rc=$?"; tail -2 $OUT/pytest_gpu2.log
