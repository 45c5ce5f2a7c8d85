#!/usr/bin/env bash
# Session 13, run 3 (H100): where the dQ schedule's first kernel loses on [paper] local (s13run2:
# 43.7 ms against 41.5 for s13run1's single 4-token kernel): the explicit 4x4x64 tile (one kernel,
# no limit; the bitmap build, Q and dO staged once the union is counted) on the commit in BUILD_INFO.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
for dk in 192 128; do
  timeout 60 python3 bench/sweep_tiles.py --branch selected --T 65536 --dk $dk --backward --tiles 0x0x0,4x4x64 2>&1 | sed "s/^/dk=$dk /" | tee -a $out/sweep.log
done
