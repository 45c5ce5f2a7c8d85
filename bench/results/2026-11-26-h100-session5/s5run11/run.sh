#!/usr/bin/env bash
# Session 5, run 11 (H100): the fewer-pass gated sum in nsa_attention (Python only; the library of run 9): Python GPU tests and the NSA bench.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader; git log --oneline -1 2>/dev/null
timeout 300 python3 -m pytest -q python/tests -p no:cacheprovider > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; tail -3 "$out/pytest.log"
timeout 200 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit nsa,sdpa-cudnn dense [paper]" --no-compile-test --no-png --max-minutes 3 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|kernels:" "$out/bench.log" | cut -c1-400
