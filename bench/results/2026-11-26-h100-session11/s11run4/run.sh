#!/usr/bin/env bash
# Session 11, run 4 (H100): the warp-specialised wgmma forward with a producer warpgroup that gives
# its registers to the consumers (setmaxnreg 40 / 232), so 128-key chunks fit: timings per chunk /
# ring size / producer size; the quick GPU forward matrix with 128-key chunks, a ring of 2.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
R=$W/ref; mkdir -p $R
for v in "ref 0 128 2 32" "wg128x2 1 128 2 128" "wg64x3 1 64 3 128" "wg64x4 1 64 4 128"; do set -- $v
  NSAJIT_CACHE_DIR=$W/cache-$1 NSAJIT_EXP_WS=$2 NSAJIT_EXP_WS_CHUNK=$3 NSAJIT_EXP_WS_STAGES=$4 NSAJIT_EXP_WS_PRODUCERS=$5 timeout 100 python3 .carry/fwd_variants.py $1 $R fwd 2>&1 | grep -v "^JSON" | tee -a "$out/variants.log"
done
export NSAJIT_EXP_WS=1 NSAJIT_EXP_WS_CHUNK=128 NSAJIT_EXP_WS_STAGES=2 NSAJIT_EXP_WS_PRODUCERS=128 NSAJIT_CACHE_DIR=$W/cache-wsq
NSAJIT_GPU_TEST_QUICK=1 timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick-ws.log" 2>&1
echo "gpu fwd quick (ws 128x2, producer warpgroup) rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick-ws.log" | head -8 | cut -c1-200
