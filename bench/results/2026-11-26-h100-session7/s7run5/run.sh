#!/usr/bin/env bash
# Session 7, run 5 (H100): the full T = 64k benchmark of the final code (top-n on wgmma S^T with the ballot merge, dK/dV split by CTA count) (nsajit, cuDNN, Flex, compile times).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 520 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,flex,compile" --max-minutes 7 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|MISS|MET|PASS" "$out/bench.log" | cut -c1-160
