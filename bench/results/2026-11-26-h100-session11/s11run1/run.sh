#!/usr/bin/env bash
# Session 11, run 1 (H100): the warp-specialised wgmma forward (NSAJIT_EXP_WS: a producer warp
# streams K/V chunks through an mbarrier ring to two consumer warpgroups, one CTA an SM):
# dense forward timings per chunk / ring size, then the quick GPU forward matrix with it on.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
R=$W/ref; mkdir -p $R
for v in "ref 0 128 2" "ws128x2 1 128 2" "ws64x3 1 64 3" "ws64x4 1 64 4"; do set -- $v
  NSAJIT_CACHE_DIR=$W/cache-$1 NSAJIT_EXP_WS=$2 NSAJIT_EXP_WS_CHUNK=$3 NSAJIT_EXP_WS_STAGES=$4 timeout 100 python3 .carry/fwd_variants.py $1 $R fwd 2>&1 | grep -v "^JSON" | tee -a "$out/variants.log"
done
export NSAJIT_EXP_WS=1 NSAJIT_CACHE_DIR=$W/cache-wsq
NSAJIT_GPU_TEST_QUICK=1 timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick-ws.log" 2>&1
echo "gpu fwd quick (ws 128x2) rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick-ws.log" | head -8 | cut -c1-200
