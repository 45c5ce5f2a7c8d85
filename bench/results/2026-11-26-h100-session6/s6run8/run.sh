#!/usr/bin/env bash
# Session 6, run 8 (H100): the selected dQ schedule: tokens a CTA 1 (per token), 2, 4, 8; random and local indices.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
for dk in 128 192; do
  timeout 200 python3 bench/sweep_tiles.py --branch selected --dk $dk --backward --tiles 0x1x0,0x2x0,0x4x0,0x8x0 --out "$out/sweep-dq-dk$dk.json" 2>&1 | cut -c1-220
done
