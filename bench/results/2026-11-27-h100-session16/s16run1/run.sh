#!/usr/bin/env bash
# Session 16, run 1 (H100): the selected dK/dV walk, four variants of one build (uncommitted
# experiment switches read at code generation, each variant with its own cache directory):
#   base: as 9b575b8; rot: the walk starts at the pivot (NSAJIT_EXP_ROT); int: the heads
#   interleaved in the CTA order (NSAJIT_EXP_INTERLEAVE); both.
# The backward matrices with both switches, then selected backward launches, random and local
# indices, alternating.
out="$1"; mkdir -p "$out"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
W=/tmp/nsajit; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu.tar.xz; cat $W/nsajit/BUILD_INFO
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so
use() {
  unset NSAJIT_EXP_ROT NSAJIT_EXP_INTERLEAVE
  case $1 in rot) export NSAJIT_EXP_ROT=1;; int) export NSAJIT_EXP_INTERLEAVE=1;; both) export NSAJIT_EXP_ROT=1 NSAJIT_EXP_INTERLEAVE=1;; esac
  export NSAJIT_CACHE_DIR=/tmp/cache-$1
}
use both
timeout 200 $W/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference:GpuBackward.SplitWalksAgainstReference' > $out/bwd-both.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/bwd-both.log; grep "\] FAIL" $out/bwd-both.log | head; grep -E "^\[  (PASSED|FAILED)" $out/bwd-both.log
sweep() {  # $1 variant, $2 dk
  use $1
  timeout 90 python3 bench/sweep_tiles.py --branch selected --dk $2 --T 65536 --backward --kernels --tiles 0x0x0 2>&1 \
    | grep -v -i warn | sed "s/^/$1 dk$2: /" | tee -a $out/sweep.log | python3 -c '
import sys, json
for line in sys.stdin:
    head, _, rest = line.partition(": ")
    try: d = json.loads(rest.rsplit(" (", 1)[0])
    except Exception: print(line.strip()); continue
    k = dict((n + str(i), ms) for i, (n, ms) in enumerate(d["kernels"]))
    print(head, d["indices"], "bwd", round(d["bwd_ms"], 2), "dkdv", k.get("nsa_selected_bwd_dkdv5"), "err", d["error"], d["bwd_max_abs_diff"])'
}
for rep in 1 2; do for v in base rot int both; do sweep $v 192; done; done
for v in base rot int both; do sweep $v 128; done
