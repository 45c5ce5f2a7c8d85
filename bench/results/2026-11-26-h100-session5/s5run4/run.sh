#!/usr/bin/env bash
# Session 5, run 4: per-kernel GPU times (torch.profiler) of the 64k cases, and the Python GPU tests.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 300 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit nsa fused,nsajit cmp32/16+top16 [paper],nsajit window [paper],nsajit selected random [paper],nsajit cmp64+top16 [main]" --no-compile-test --no-png --max-minutes 4.5 --out "$out/profile.json" > "$out/profile.log" 2>&1
echo "profile rc=$?"; grep -E "^\[|kernels:" "$out/profile.log" | cut -c1-400
timeout 250 python3 -m pytest -q -x python/tests -p no:cacheprovider > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; tail -5 "$out/pytest.log"
