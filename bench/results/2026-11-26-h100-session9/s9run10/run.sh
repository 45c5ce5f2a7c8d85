#!/usr/bin/env bash
# Session 9, run 10 (H100): experiment switches for the dense wgmma dQ kernel: a ring of K/V
# chunk buffers (NSAJIT_EXP_DQ_STAGES; default: three where it keeps the CTAs an SM) and its
# chunk (NSAJIT_EXP_DQ_CHUNK); window / compressed forward + backward at T = 64k (paper, main),
# dq compared with the first variant; then the GPU backward matrix on two of them.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
REF=$(mktemp -d)
run() { local n=$1; shift; env NSAJIT_CACHE_DIR=$W/cache-$n "$@" timeout 100 python3 .carry/fwd_variants.py $n $REF fb 2>&1 | tee -a "$out/variants.log" | grep -v JSON; }
run ref NSAJIT_EXP_DQ_STAGES=2
run def
run c32 NSAJIT_EXP_DQ_CHUNK=32
run c32s4 NSAJIT_EXP_DQ_CHUNK=32 NSAJIT_EXP_DQ_STAGES=4
for v in "def:" "c32:NSAJIT_EXP_DQ_CHUNK=32"; do
  n=${v%%:*}; e=${v#*:}
  env $e NSAJIT_CACHE_DIR=$W/cache-t$n timeout 130 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.Matrix*' > "$out/gpu-bwd-$n.log" 2>&1
  echo "gpu bwd $n rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-bwd-$n.log" | head -4 | cut -c1-200
done
