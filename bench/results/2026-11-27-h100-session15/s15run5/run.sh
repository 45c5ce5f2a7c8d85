#!/usr/bin/env bash
# Session 15, run 5 (H100): the selected branch's dK/dV split length on random and local indices
# (paper head dims, T = 64k): Nsight (s15run4) showed the local bwd_dkdv 1.5x slower than random at
# 32k, with the initial block (selected by every token) walking 8192 tokens a CTA.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
for s in 0 4096 2048 1024 16384 0; do
  timeout 100 python3 bench/sweep_tiles.py --branch selected --dk 192 --T 65536 --backward --kernels --tiles 0x0x0 \
    --backward-split $s 2>&1 | grep -v -i warn | sed "s/^/split $s: /" | tee -a $out/split.log
done
