#!/usr/bin/env bash
# Session 10, run 4 (H100): dense forward tiles with larger key chunks (64, 128: one CTA an SM,
# no register cap) against the default 32-key ring, window and compressed, paper and main shapes.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
T="0x0x0,8x8x32,8x8x64,8x8x128"
{
timeout 100 python3 bench/sweep_tiles.py --branch compressed --dk 192 --l 32 --d 16 --tiles $T
timeout 100 python3 bench/sweep_tiles.py --branch window --dk 192 --tiles $T
timeout 100 python3 bench/sweep_tiles.py --branch compressed --dk 128 --l 64 --d 64 --tiles $T
timeout 100 python3 bench/sweep_tiles.py --branch window --dk 128 --tiles $T
} > "$out/sweep.log" 2>&1
grep -oE '"branch": "[a-z]+"|"tile": \[[0-9, ]+\]|"fwd_ms": [0-9.a-z]+|"error": [^}]{0,80}' "$out/sweep.log" | paste - - - - 
