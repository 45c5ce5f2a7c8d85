#!/usr/bin/env bash
# Session 5, run 10 (H100): final build: the Python GPU tests (PyTorch autograd through the backward and its per-stream workspace).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 400 python3 -m pytest -q python/tests -p no:cacheprovider > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; tail -5 "$out/pytest.log"
