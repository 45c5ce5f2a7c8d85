#!/usr/bin/env bash
# Session 12, run 2 (H100): which shape hangs the warp-specialised union kernel (s12run1's matrix
# stopped after case 34: G 16, H 1, B 2, T 453, n 6, hostile indices, tile 8x8x64).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; which compute-sanitizer; ls /usr/local/cuda/bin 2>/dev/null | head -30
N=$W/nsajit/bin/nsajit
run() { echo "== $*"; timeout 25 $N check --branch selected --group 16 --lsel 64 --tile-warps 8 --tile-tokens 8 --tile-kv-chunk 64 "$@" 2>&1 | grep -E "PASS|FAIL" | head -2; echo "rc=${PIPESTATUS[0]}"; }
{
run --T 453 --B 2 --heads 1 --n 6 --indices hostile
run --T 453 --B 2 --heads 1 --n 6
run --T 453 --B 2 --heads 1 --n 16
run --T 453 --B 1 --heads 4 --n 16
run --T 512 --B 1 --heads 4 --n 16
run --T 4096 --B 1 --heads 4 --n 16
run --T 4096 --B 1 --heads 4 --n 6
run --T 4096 --B 1 --heads 4 --n 16 --indices local
run --T 4000 --B 1 --heads 4 --n 16
run --T 4096 --B 2 --heads 4 --n 16
run --T 4096 --B 1 --heads 1 --n 16
} 2>&1 | tee $out/bisect.log
