#!/usr/bin/env bash
# Session 10, run 2 (H100): the top-n with the carry after the merge: GPU top-n suite; then the
# experiment knobs NSAJIT_EXP_ROWPTR (one 64-bit address a staged row, copies at immediate offsets)
# and NSAJIT_EXP_UNIFORM_WARP (the warp index broadcast from lane 0, so ptxas keeps warp-derived
# values in uniform registers): top-n and dense forward timings per variant, and the GPU top-n
# suite and quick forward matrix with both on.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_CACHE_DIR=$W/cache-base timeout 100 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*' > "$out/gpu-topn.log" 2>&1
echo "gpu topn (no knobs) rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-topn.log" | head -8 | cut -c1-200
R=$W/ref; mkdir -p $R
for v in "ref 0 0" "rowptr 1 0" "uniform 0 1" "both 1 1"; do set -- $v
  NSAJIT_CACHE_DIR=$W/cache-$1 NSAJIT_EXP_ROWPTR=$2 NSAJIT_EXP_UNIFORM_WARP=$3 timeout 90 python3 .carry/topn_variants.py $1 $R 2>&1 | grep -v "^JSON" | tee -a "$out/variants.log"
  NSAJIT_CACHE_DIR=$W/cache-$1 NSAJIT_EXP_ROWPTR=$2 NSAJIT_EXP_UNIFORM_WARP=$3 timeout 90 python3 .carry/fwd_variants.py $1 $R fwd 2>&1 | grep -v "^JSON" | tee -a "$out/variants.log"
done
export NSAJIT_EXP_ROWPTR=1 NSAJIT_EXP_UNIFORM_WARP=1 NSAJIT_CACHE_DIR=$W/cache-both
timeout 100 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*' > "$out/gpu-topn-both.log" 2>&1
echo "gpu topn (both) rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-topn-both.log" | head -8 | cut -c1-200
NSAJIT_GPU_TEST_QUICK=1 timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick-both.log" 2>&1
echo "gpu fwd quick (both) rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick-both.log" | head -5 | cut -c1-200
