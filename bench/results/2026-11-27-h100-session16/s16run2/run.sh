#!/usr/bin/env bash
# Session 16, run 2 (H100): the selected dK/dV walk, variants of one build (uncommitted experiment
# switches read at code generation, each variant with its own cache directory): base (as
# 9b575b8), rot (the walk starts at the pivot), both (rot + the heads interleaved in the CTA
# order), front (rot + only the first key chunk's splits interleaved across heads, the rest
# head-major). The backward matrices on front; selected backward launches, random and local
# indices; then the NSA [paper] local row (10 repetitions) per variant, twice, and cuDNN once.
out="$1"; mkdir -p "$out"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
W=/tmp/nsajit; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu.tar.xz; cat $W/nsajit/BUILD_INFO
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so
use() {
  unset NSAJIT_EXP_ROT NSAJIT_EXP_INTERLEAVE
  case $1 in rot) export NSAJIT_EXP_ROT=1;; both) export NSAJIT_EXP_ROT=1 NSAJIT_EXP_INTERLEAVE=1;;
             front) export NSAJIT_EXP_ROT=1 NSAJIT_EXP_INTERLEAVE=2;; esac
  export NSAJIT_CACHE_DIR=/tmp/cache-$1
}
use front
timeout 200 $W/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference:GpuBackward.SplitWalksAgainstReference' > $out/bwd-front.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/bwd-front.log; grep "\] FAIL" $out/bwd-front.log | head; grep -E "^\[  (PASSED|FAILED)" $out/bwd-front.log
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
for rep in 1 2; do for v in rot both front; do sweep $v 192; done; done
for v in rot both front; do sweep $v 128; done
row() {  # $1 variant, $2 repetition
  use $1
  timeout 100 python3 bench/bench_nsa.py --quick --T 64k --only "nsajit nsa local" --min-reps 10 --max-reps 10 \
    --no-compile-test --max-minutes 2 --out "$out/bench-$1-$2.json" --no-png > "$out/bench-$1-$2.log" 2>&1
  echo "$1 $2 rc=$? $(grep -E 'nsa local.*fwdbwd' $out/bench-$1-$2.log | tail -1)"
}
for rep in 1 2; do for v in base rot both front; do row $v $rep; done; done
use base
timeout 100 python3 bench/bench_nsa.py --quick --T 64k --only "sdpa-cudnn dense [paper]" --min-reps 10 --max-reps 10 \
  --no-compile-test --max-minutes 2 --out "$out/bench-cudnn.json" --no-png > "$out/bench-cudnn.log" 2>&1
echo "cudnn rc=$? $(grep -E 'cudnn dense.*fwdbwd' $out/bench-cudnn.log | tail -1)"
