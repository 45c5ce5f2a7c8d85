#!/usr/bin/env bash
# Session 14, run 3 (H100, the same machine as run 2, given as one command line): the compressed
# dK/dV kernel's GPU ms over backward split lengths (0: automatic, 2048, 1024 tokens a CTA),
# base (9e93ff6, chunk-relative segments) against var (adf2a72, segment-major), twice.
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python; mkdir -p $OUT/s14run3
for v in base var; do W=/tmp/nsajit-$v; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu-$v.tar.xz; done
for rep in 1 2; do for v in base var; do for sp in 0 2048 1024; do
  for args in "--branch compressed --dk 192 --l 32 --d 16" "--branch compressed --dk 128"; do
    export NSAJIT_LIBRARY=/tmp/nsajit-$v/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-$v/cache
    timeout 60 python3 bench/sweep_tiles.py $args --T 65536 --backward --kernels --tiles 0x0x0 --backward-split $sp 2>&1 \
      | grep -v -i warn | sed "s/^/$v split=$sp $args: /" | tee -a $OUT/s14run3/sweep.log
  done
done; done; done
