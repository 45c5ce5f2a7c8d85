#!/usr/bin/env bash
# Session 11, run 7 (H100): FA3's ping-pong between the warp-specialised forward's two consumer
# warpgroups (NSAJIT_EXP_PINGPONG: named barriers make them take turns issuing their wgmma):
# dense forward timings with and without, then the quick GPU forward matrix with it.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
R=$W/ref; mkdir -p $R
for v in "ref 0" "pingpong 1" "ref2 0" "pingpong2 1"; do set -- $v
  NSAJIT_CACHE_DIR=$W/cache-$2 NSAJIT_EXP_PINGPONG=$2 timeout 100 python3 .carry/fwd_variants.py $1 $R fwd 2>&1 | grep -v "^JSON" | tee -a "$out/variants.log"
done
export NSAJIT_EXP_PINGPONG=1 NSAJIT_CACHE_DIR=$W/cache-1
NSAJIT_GPU_TEST_QUICK=1 timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick-pingpong.log" 2>&1
echo "gpu fwd quick (ping-pong) rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick-pingpong.log" | head -8 | cut -c1-200
