#!/usr/bin/env bash
# Session 17, run 4 (H100): the warp-specialised forward's variants, chosen at code generation by
# temporary switches of one build (commit in BUILD_INFO), each with its own kernel cache:
# base; unroll (the producer's K/V copies unrolled: no loop, no register reused by the next copy);
# ring4 (a ring of four chunk buffers where they fit: Dk = 128); both; all (both and the tiles
# pipelined across, as s17run3's var). The quick forward matrix on `all`; each forward kernel's time.
out="$1"; mkdir -p "$out/logs"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
W=/tmp/nsajit; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu.tar.xz; cat $W/nsajit/BUILD_INFO
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so
use() {
  unset NSAJIT_EXP_UNROLL NSAJIT_EXP_RING4 NSAJIT_EXP_ACROSS; export NSAJIT_CACHE_DIR=$W/cache-$1
  case $1 in unroll) export NSAJIT_EXP_UNROLL=1;; ring4) export NSAJIT_EXP_RING4=1;;
    both) export NSAJIT_EXP_UNROLL=1 NSAJIT_EXP_RING4=1;; all) export NSAJIT_EXP_UNROLL=1 NSAJIT_EXP_RING4=1 NSAJIT_EXP_ACROSS=1;; esac
}
use all
NSAJIT_GPU_TEST_QUICK=1 timeout 100 $W/nsajit/bin/gpu_tests --gtest_filter='GpuForward.*' > $out/logs/fwd-all.log 2>&1
echo "fwd rc=$?"; grep -c " PASS " $out/logs/fwd-all.log; grep " FAIL " $out/logs/fwd-all.log | head; grep -E "^\[  (PASSED|FAILED)" $out/logs/fwd-all.log
sweep() {  # $1 variant, $2 label, then sweep_tiles arguments
  use $1; v=$1 label=$2; shift 2
  timeout 40 python3 bench/sweep_tiles.py "$@" --T 65536 --kernels --tiles 0x0x0 2>&1 | grep -v -i warn \
    | sed "s/^/$v $label: /" | tee -a $out/logs/sweep.log | python3 -c '
import sys, json
for line in sys.stdin:
    head, _, rest = line.partition(": ")
    try: d = json.loads(rest.rsplit(" (", 1)[0])
    except Exception: print(line.strip()); continue
    print(head, d["indices"], [k for n, k in d["kernels"]], "err", d["error"])'
}
for rep in 1 2; do for v in base unroll ring4 both all; do
  sweep $v win-main --branch window --dk 128
  sweep $v cmp-paper --branch compressed --dk 192 --l 32 --d 16
  sweep $v cmp64-main --branch compressed --dk 128 --l 64 --d 64
done; done
for v in base unroll both; do sweep $v win-paper --branch window --dk 192; sweep $v slc-main --branch selected --dk 128; done
tar -C $out -czf $out/logs.tgz logs && rm -rf $out/logs
