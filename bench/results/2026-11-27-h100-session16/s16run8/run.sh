#!/usr/bin/env bash
# Session 16, run 8 (H100): the dK/dV kernels' ring of three step buffers with one barrier a step
# (var, commit in its BUILD_INFO) against c9b63b4 (base, two buffers and two barriers): the
# backward matrices on var; each dK/dV kernel's time (sweep_tiles --kernels) on base and var,
# alternating; the NSA [paper] local row (10 repetitions) on both and its cuDNN reference.
out="$1"; mkdir -p "$out/logs"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
for v in base var; do mkdir -p /tmp/nsajit-$v; tar -C /tmp/nsajit-$v -xJf .carry/nsajit-gpu-$v.tar.xz; cat /tmp/nsajit-$v/nsajit/BUILD_INFO; done
use() { export NSAJIT_LIBRARY=/tmp/nsajit-$1/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-$1/cache; }
use var
timeout 240 /tmp/nsajit-var/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference:GpuBackward.SplitWalksAgainstReference' > $out/logs/bwd-var.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/logs/bwd-var.log; grep "\] FAIL" $out/logs/bwd-var.log | head; grep -E "^\[  (PASSED|FAILED)" $out/logs/bwd-var.log
sweep() {  # $1 variant, $2 label, then sweep_tiles arguments
  use $1; v=$1 label=$2; shift 2
  timeout 60 python3 bench/sweep_tiles.py "$@" --T 65536 --backward --kernels --tiles 0x0x0 2>&1 | grep -v -i warn \
    | sed "s/^/$v $label: /" | tee -a $out/logs/sweep.log | python3 -c '
import sys, json
for line in sys.stdin:
    head, _, rest = line.partition(": ")
    try: d = json.loads(rest.rsplit(" (", 1)[0])
    except Exception: print(line.strip()); continue
    dk = [ms for n, ms in d["kernels"] if n.endswith("bwd_dkdv")]
    print(head, d["indices"], "bwd", round(d["bwd_ms"], 2), "dkdv", dk, "err", d["error"])'
}
for rep in 1 2; do for v in base var; do
  sweep $v cmp-paper --branch compressed --dk 192 --l 32 --d 16
  sweep $v win-paper --branch window --dk 192
  sweep $v win-main --branch window --dk 128
  sweep $v slc-paper --branch selected --dk 192
done; done
for v in base var; do
  sweep $v cmp64-main --branch compressed --dk 128 --l 64 --d 64
  sweep $v slc-main --branch selected --dk 128
done
row() {  # $1 variant
  use $1
  timeout 100 python3 bench/bench_nsa.py --quick --T 64k --only "$2" --min-reps 10 --max-reps 10 \
    --no-compile-test --max-minutes 2 --out "$out/logs/row-$1-$3.json" --no-png > "$out/logs/row-$1-$3.log" 2>&1
  echo "$1 $3 rc=$? $(grep -E 'fwdbwd \.\.\.' $out/logs/row-$1-$3.log | tail -1)"
}
row base "nsajit nsa local" 1; row var "nsajit nsa local" 1; row var "nsajit nsa local,sdpa-cudnn dense [paper]" 2
tar -C $out -czf $out/logs.tgz logs && rm -rf $out/logs
