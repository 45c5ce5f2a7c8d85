#!/usr/bin/env bash
# Session 9, run 4 (H100): the new dense forward defaults (32-key chunks in a ring of three
# buffers, row-wise swizzled staging, two CTAs an SM) and row-wise backward staging: nsajit's
# T = 64k benchmark; then the experiment switch NSAJIT_EXP_ROWS_BYROW=1 (row-wise staging of
# the padded mma.sync tiles: the selected kernels) on the selected and NSA cases.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_CACHE_DIR=$W/cache-a timeout 280 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit" --no-compile-test --max-minutes 4.5 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[" "$out/bench.log" | grep -v "fwd:" | cut -c1-120
grep -E "^  *[a-z].*(ms|%)" "$out/bench.log" | head -0
NSAJIT_EXP_ROWS_BYROW=1 NSAJIT_CACHE_DIR=$W/cache-b timeout 200 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit selected,nsajit nsa" --no-compile-test --no-png --max-minutes 3 --out "$out/bench-rowsbyrow.json" > "$out/bench-rowsbyrow.log" 2>&1
echo "bench rows-byrow rc=$?"; grep -E "^\[" "$out/bench-rowsbyrow.log" | grep -v "fwd:" | cut -c1-120
