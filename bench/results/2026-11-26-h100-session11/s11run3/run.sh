#!/usr/bin/env bash
# Session 11, run 3 (H100): the warp-specialised wgmma forward, its producer warp no longer waiting
# for its copies (cp.async.mbarrier.arrive.noinc on the ring barrier): timings per chunk / ring size,
# with and without the intra-warpgroup overlap; the quick GPU forward matrix (64-key chunks, ring of 3).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
R=$W/ref; mkdir -p $R
for v in "ref 0 128 2" "ws64x3 1 64 3 1" "ws64x4 1 64 4 1" "ws64x3-noov 1 64 3 0" "ws32x6 1 32 6 1"; do set -- $v
  NSAJIT_CACHE_DIR=$W/cache-$1 NSAJIT_EXP_WS=$2 NSAJIT_EXP_WS_CHUNK=$3 NSAJIT_EXP_WS_STAGES=$4 NSAJIT_EXP_WS_OVERLAP=${5:-1} timeout 100 python3 .carry/fwd_variants.py $1 $R fwd 2>&1 | grep -v "^JSON" | tee -a "$out/variants.log"
done
export NSAJIT_EXP_WS=1 NSAJIT_EXP_WS_CHUNK=64 NSAJIT_EXP_WS_STAGES=3 NSAJIT_CACHE_DIR=$W/cache-wsq
NSAJIT_GPU_TEST_QUICK=1 timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick-ws.log" 2>&1
echo "gpu fwd quick (ws 64x3) rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick-ws.log" | head -8 | cut -c1-200
