#!/usr/bin/env bash
# Session 7, run 8 (H100): the final code's Python GPU tests of nsa_attention and the combine (_SharedQuery
# passes None for a branch without a gradient).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 150 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "nsa_attention or combine or gated or shared" > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest.log" | tail -6 | cut -c1-250
