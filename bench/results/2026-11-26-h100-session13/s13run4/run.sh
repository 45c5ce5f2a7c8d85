#!/usr/bin/env bash
# Session 13, run 4 (H100): each kernel launch of the default selected forward + backward,
# schedules on (commit in BUILD_INFO; sweep_tiles --kernels): how the dQ schedule's two
# kernels split the [paper] local time (s13run2/3: 43.7 ms against 40.3 for the one-kernel 4x4x64).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
for dk in 192 128; do
  timeout 60 python3 bench/sweep_tiles.py --branch selected --T 65536 --dk $dk --backward --kernels --tiles 0x0x0,4x4x64 2>&1 | sed "s/^/dk=$dk /" | tee -a $out/sweep.log
done
