#!/usr/bin/env bash
# Session 11, run 5 (H100): the warp-specialised wgmma forward (producer warpgroup, setmaxnreg,
# 64-key chunks in a ring of 3) whose CTAs walk several token tiles (NSAJIT_EXP_WS_TILES; Q in two
# buffers, so a tile's Q and first chunks are staged while the last tile is finished and stored):
# timings per tiles-a-CTA; the quick GPU forward matrix with 8 tiles a CTA.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
R=$W/ref; mkdir -p $R
export NSAJIT_EXP_WS_CHUNK=64 NSAJIT_EXP_WS_STAGES=3 NSAJIT_EXP_WS_PRODUCERS=128
for v in "ref 0 1" "tiles1 1 1" "tiles4 1 4" "tiles8 1 8" "tiles16 1 16"; do set -- $v
  NSAJIT_CACHE_DIR=$W/cache-$1 NSAJIT_EXP_WS=$2 NSAJIT_EXP_WS_TILES=$3 timeout 100 python3 .carry/fwd_variants.py $1 $R fwd 2>&1 | grep -v "^JSON" | tee -a "$out/variants.log"
done
export NSAJIT_EXP_WS=1 NSAJIT_EXP_WS_TILES=8 NSAJIT_CACHE_DIR=$W/cache-wsq
NSAJIT_GPU_TEST_QUICK=1 timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick-ws.log" 2>&1
echo "gpu fwd quick (ws, 8 tiles a CTA) rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick-ws.log" | head -8 | cut -c1-200
