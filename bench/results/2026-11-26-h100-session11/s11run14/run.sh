#!/usr/bin/env bash
# Session 11, run 14 (H100): s11run13 again for its A/B timings, which failed there (the first
# variant must be named ref): the forward with tree-reduced row maxima and sums (commit in BUILD_INFO)
# against 98635c1, twice each, in one run.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); B=$(mktemp -d)
tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz; tar -C "$B" -xJf .carry/nsajit-gpu-base.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO $B/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
R=$W/ref; mkdir -p $R
for v in "ref $B" "tree $W" "base2 $B" "tree2 $W"; do set -- $v
  NSAJIT_LIBRARY=$2/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$2/cache timeout 100 python3 .carry/fwd_variants.py $1 $R fwd 2>&1 | grep -v "^JSON" | tee -a "$out/variants.log"
done
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
