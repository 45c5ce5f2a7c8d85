#!/usr/bin/env bash
# Session 9, run 3 (H100): row-wise staging (one row offset a row) for the wgmma forward and
# backward, with ring depths, chunk sizes and warps of the dense forwards; times per variant and
# compares outputs (forward) and dq (forward + backward) with the reference variant.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
REF=$(mktemp -d)
run() { # name mode env...
  local n=$1 m=$2; shift 2
  env NSAJIT_CACHE_DIR=$W/cache-$n "$@" timeout 100 python3 .carry/fwd_variants.py $n $REF $m 2>&1 | tee -a "$out/variants.log" | grep -v JSON
}
run ref fwd NSAJIT_EXP_TRAILBAR=1 NSAJIT_EXP_BYROW=0
run s2row fwd NSAJIT_EXP_STAGES=2
run s3row fwd NSAJIT_EXP_STAGES=3
run c32s3 fwd NSAJIT_EXP_STAGES=3 NSAJIT_EXP_FWD_CHUNK=32
run c32s4 fwd NSAJIT_EXP_STAGES=4 NSAJIT_EXP_FWD_CHUNK=32
run c32s5 fwd NSAJIT_EXP_STAGES=5 NSAJIT_EXP_FWD_CHUNK=32
run w4c32s4 fwd NSAJIT_EXP_STAGES=4 NSAJIT_EXP_FWD_CHUNK=32 NSAJIT_EXP_FWD_WARPS=4
run w4s3 fwd NSAJIT_EXP_STAGES=3 NSAJIT_EXP_FWD_WARPS=4
run w4c32s6 fwd NSAJIT_EXP_STAGES=6 NSAJIT_EXP_FWD_CHUNK=32 NSAJIT_EXP_FWD_WARPS=4
run ref fb NSAJIT_EXP_TRAILBAR=1 NSAJIT_EXP_BYROW=0
run s2row fb NSAJIT_EXP_STAGES=2
run s2bwdrow fb NSAJIT_EXP_STAGES=2 NSAJIT_EXP_BWD_BYROW=1
env NSAJIT_EXP_STAGES=4 NSAJIT_EXP_FWD_CHUNK=32 NSAJIT_GPU_TEST_QUICK=1 NSAJIT_CACHE_DIR=$W/cache-tf timeout 60 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick-c32s4.log" 2>&1
echo "gpu fwd quick c32s4 rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick-c32s4.log" | head -5 | cut -c1-200
env NSAJIT_EXP_BWD_BYROW=1 NSAJIT_CACHE_DIR=$W/cache-tb timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.Matrix*' > "$out/gpu-bwd-bwdrow.log" 2>&1
echo "gpu bwd bwdrow rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-bwd-bwdrow.log" | head -5 | cut -c1-200
