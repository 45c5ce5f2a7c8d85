#!/usr/bin/env bash
# Session 14, run 4 (H100): the selected dK/dV walk segment-major (var: uncommitted, on 95cede8)
# against chunk-relative segments (base: 95cede8), over backward split lengths; the split matrix
# on var.
out="$1"; mkdir -p "$out"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
for v in base var; do W=/tmp/nsajit-$v; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu-$v.tar.xz; cat $W/nsajit/BUILD_INFO; done
for v in base var; do for sp in 0 4096 2048; do for dk in 192 128; do
  export NSAJIT_LIBRARY=/tmp/nsajit-$v/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-$v/cache
  timeout 60 python3 bench/sweep_tiles.py --branch selected --dk $dk --T 65536 --backward --kernels --tiles 0x0x0 --backward-split $sp 2>&1 \
    | grep -v -i warn | sed "s/^/$v split=$sp dk=$dk: /" | tee -a $out/sweep.log | grep -o "^$v split=[0-9]* dk=[0-9]*\|\"indices\": \"[a-z]*\"\|nsa_selected_bwd_dkdv\", [0-9.]*" | tr '\n' ' '; echo
done; done; done
export NSAJIT_LIBRARY=/tmp/nsajit-var/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-var/cache
timeout 150 /tmp/nsajit-var/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.SplitWalksAgainstReference' > $out/bwd-split.log 2>&1
echo "split rc=$?"; grep -c "\] PASS" $out/bwd-split.log; grep "\] FAIL" $out/bwd-split.log | head -5; grep -E "^\[  (PASSED|FAILED)" $out/bwd-split.log
