#!/usr/bin/env bash
# Session 13, run 5 (H100): the benchmark on the dQ two-kernel schedule (commit in BUILD_INFO),
# then the [paper] selected backward's kernels with the tiles in the other order than s13run4
# (the explicit 4x4x64 first), to see whether its dQ first kernel's 20.4 ms against 16.6 is order.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
timeout 330 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,compile" --max-minutes 5 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "PASS|MISS|not measured" $out/bench.log | tail -14
timeout 60 python3 bench/sweep_tiles.py --branch selected --T 65536 --dk 192 --backward --kernels --tiles 4x4x64,0x0x0 2>&1 | grep -v Warning | tee -a $out/sweep.log
