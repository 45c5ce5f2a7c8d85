#!/usr/bin/env bash
# Session 12, run 1 (H100): the warp-specialised union kernel of the selected forward (tiles 8x8x64,
# 8x8x32): the quick forward matrix (with its new cases), then T = 64k timings against the default
# and the per-token schedule on random and local indices, outputs compared with the default's.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_QUICK=1 NSAJIT_GPU_TEST_JSON=$out/fwd_quick.jsonl timeout 200 $W/nsajit/bin/gpu_tests --gtest_filter='GpuForward.MatrixAgainstReference' > $out/fwd_quick.log 2>&1
grep -E "FAIL|passed|tests" $out/fwd_quick.log | tail -15
grep "tile-warps=8" $out/fwd_quick.log | grep -c PASS
timeout 150 python3 bench/sweep_tiles.py --branch selected --T 65536 --tiles 0x0x0,1x1x0,8x8x64 --out $out/sweep_main.json 2>&1 | tee $out/sweep.log
timeout 150 python3 bench/sweep_tiles.py --branch selected --T 65536 --dk 192 --tiles 0x0x0,8x8x64,8x8x32 --out $out/sweep_paper.json 2>&1 | tee -a $out/sweep.log
