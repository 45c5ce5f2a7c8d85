#!/usr/bin/env bash
# Session 17, run 3 (H100): the dense forward's tiles pipelined across (var: a tile's last P V and
# the next tile's first scores issued together, the outputs stored while those run) against
# 08652d0 (base). The forward matrix on var; each forward kernel's time on base and var, alternating.
out="$1"; mkdir -p "$out/logs"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
for v in base var; do mkdir -p /tmp/nsajit-$v; tar -C /tmp/nsajit-$v -xJf .carry/nsajit-gpu-$v.tar.xz; cat /tmp/nsajit-$v/nsajit/BUILD_INFO; done
use() { export NSAJIT_LIBRARY=/tmp/nsajit-$1/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=/tmp/nsajit-$1/cache; }
use var
timeout 200 /tmp/nsajit-var/nsajit/bin/gpu_tests --gtest_filter='GpuForward.*' > $out/logs/fwd-var.log 2>&1
echo "fwd rc=$?"; grep -c "\] PASS\|^\[       OK" $out/logs/fwd-var.log; grep "FAIL" $out/logs/fwd-var.log | head; grep -E "^\[  (PASSED|FAILED)" $out/logs/fwd-var.log
sweep() {  # $1 variant, $2 label, then sweep_tiles arguments
  use $1; v=$1 label=$2; shift 2
  timeout 60 python3 bench/sweep_tiles.py "$@" --T 65536 --kernels --tiles 0x0x0 2>&1 | grep -v -i warn \
    | sed "s/^/$v $label: /" | tee -a $out/logs/sweep.log | python3 -c '
import sys, json
for line in sys.stdin:
    head, _, rest = line.partition(": ")
    try: d = json.loads(rest.rsplit(" (", 1)[0])
    except Exception: print(line.strip()); continue
    print(head, d["indices"], "fwd", round(d["fwd_ms"] or -1, 3), d["kernels"], "diff", d["max_abs_diff"], "err", d["error"])'
}
for rep in 1 2 3; do for v in base var; do
  sweep $v win-main --branch window --dk 128
  sweep $v win-paper --branch window --dk 192
  sweep $v cmp-paper --branch compressed --dk 192 --l 32 --d 16
  sweep $v cmp64-main --branch compressed --dk 128 --l 64 --d 64
done; done
use var; timeout 120 python3 -m pytest -q -x python/tests -k "forward or fwd" > $out/logs/pytest-fwd.log 2>&1; echo "pytest rc=$?"; tail -2 $out/logs/pytest-fwd.log
tar -C $out -czf $out/logs.tgz logs && rm -rf $out/logs
