#!/usr/bin/env bash
# Session 9, run 2 (H100): experiment build with switches for the wgmma forward walk: the ring of
# K/V chunk buffers (stages), one barrier a chunk, row-wise staging, the next chunk's scores issued
# before the softmax (overlap), one warpgroup a CTA. Times window / compressed forwards (paper,
# main, T = 64k) per variant, compares outputs with the reference variant, and runs the quick
# GPU forward matrix on the variants that could become defaults.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
REF=$(mktemp -d)
run() { # name, env...
  local n=$1; shift
  env NSAJIT_CACHE_DIR=$W/cache-$n "$@" timeout 100 python3 .carry/fwd_variants.py $n $REF 2>&1 | tee -a "$out/variants.log" | grep -v JSON
}
run ref NSAJIT_EXP_TRAILBAR=1
run s2 NSAJIT_EXP_STAGES=2
run s3 NSAJIT_EXP_STAGES=3
run s3row NSAJIT_EXP_STAGES=3 NSAJIT_EXP_BYROW=1
run s3ov NSAJIT_EXP_STAGES=3 NSAJIT_EXP_OVERLAP=1
run s4ov NSAJIT_EXP_STAGES=4 NSAJIT_EXP_OVERLAP=1
run s3ovw4 NSAJIT_EXP_STAGES=3 NSAJIT_EXP_OVERLAP=1 NSAJIT_EXP_FWD_WARPS=4
run s3c32 NSAJIT_EXP_STAGES=3 NSAJIT_EXP_FWD_CHUNK=32
run s4c32 NSAJIT_EXP_STAGES=4 NSAJIT_EXP_FWD_CHUNK=32
run s4ovc32 NSAJIT_EXP_STAGES=4 NSAJIT_EXP_OVERLAP=1 NSAJIT_EXP_FWD_CHUNK=32
run s3ovw4c32 NSAJIT_EXP_STAGES=3 NSAJIT_EXP_OVERLAP=1 NSAJIT_EXP_FWD_WARPS=4 NSAJIT_EXP_FWD_CHUNK=32
for v in "s3:NSAJIT_EXP_STAGES=3" "s3ov:NSAJIT_EXP_STAGES=3 NSAJIT_EXP_OVERLAP=1" "s4ov:NSAJIT_EXP_STAGES=4 NSAJIT_EXP_OVERLAP=1"; do
  n=${v%%:*}; e=${v#*:}
  env $e NSAJIT_GPU_TEST_QUICK=1 NSAJIT_CACHE_DIR=$W/cache-t$n timeout 60 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick-$n.log" 2>&1
  echo "gpu fwd quick $n rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick-$n.log" | head -5 | cut -c1-200
done
