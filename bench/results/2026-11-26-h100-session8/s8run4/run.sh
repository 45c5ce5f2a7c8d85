#!/usr/bin/env bash
# Session 8, run 4 (H100): the tuner's view of the forward tiles at T = 64k, paper (Dk 192) and
# main (Dk 128) parameters: every legal tile of each branch's forward, timed with events.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
N=$W/nsajit/bin/nsajit
{ timeout 200 $N tune --dk 192 --dv 128 --l 32 --d 16 --T 65536 --repeats 10; } > "$out/tune-paper.log" 2>&1
echo "paper rc=$?"; grep -E "best|tiles" "$out/tune-paper.log"
{ timeout 150 $N tune --dk 128 --dv 128 --l 64 --d 64 --T 65536 --repeats 10; } > "$out/tune-main.log" 2>&1
echo "main rc=$?"; grep -E "best|tiles" "$out/tune-main.log"
