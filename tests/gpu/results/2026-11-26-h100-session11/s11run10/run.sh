#!/usr/bin/env bash
# Session 11, run 10 (H100): the Python GPU tests on the warp-specialised dense forward (commit in
# BUILD_INFO).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "nsa_attention or combine or topn or gated or prepare or cache or selected or window or compressed" > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest.log" | tail -6 | cut -c1-250
