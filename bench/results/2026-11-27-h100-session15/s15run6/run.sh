#!/usr/bin/env bash
# Session 15, run 6 (H100): the tuners with the selected branch timed on random plus local indices
# (commit in BUILD_INFO): their Python GPU tests, then `nsajit tune --backward` of the selected
# branch on the paper's configuration at T = 64k.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 150 python3 -m pytest -q python/tests -k "tune" > $out/pytest-tune.log 2>&1; echo "pytest tune rc=$?"; tail -2 $out/pytest-tune.log
timeout 300 $W/nsajit/bin/nsajit tune --backward --branch selected --T 65536 --heads 4 --group 16 --dk 192 --dv 128 \
  --l 32 --d 16 --lsel 64 --n 16 --w 512 --repeats 5 > $out/tune-selected-paper.log 2>&1
echo "tune rc=$?"; tr '\r' '\n' < $out/tune-selected-paper.log | grep -E "best|split|/" | tail -30
cp $W/cache/tuning/*.tsv $out/ 2>/dev/null
