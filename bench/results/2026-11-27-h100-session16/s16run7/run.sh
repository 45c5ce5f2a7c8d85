#!/usr/bin/env bash
# Session 16, run 7 (H100): the selected branch's automatic dK/dV split by the launch's size
# (commit in BUILD_INFO): the selected [paper] backward at T = 16k, 32k and 64k on random and
# local indices, automatic (0) against explicit split lengths; [main] at 32k; then the split
# matrix (many splits) once more.
out="$1"; mkdir -p "$out/logs"
W=/tmp/nsajit; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
sweep() {  # $1 dk, $2 T, $3 split tokens
  timeout 90 python3 bench/sweep_tiles.py --branch selected --dk $1 --T $2 --backward --kernels --tiles 0x0x0 \
    --backward-split $3 2>&1 | grep -v -i warn | sed "s/^/dk$1 T$2 split $3: /" | tee -a $out/logs/split.log | python3 -c '
import sys, json
for line in sys.stdin:
    head, _, rest = line.partition(": ")
    try: d = json.loads(rest.rsplit(" (", 1)[0])
    except Exception: print(line.strip()); continue
    k = dict((n + str(i), ms) for i, (n, ms) in enumerate(d["kernels"]))
    print(head, d["indices"], "bwd", round(d["bwd_ms"], 2), "dkdv", k.get("nsa_selected_bwd_dkdv5"), "err", d["error"])'
}
for s in 0 16384 4096 0; do sweep 192 32768 $s; done
for s in 0 8192 16384; do sweep 192 16384 $s; done
for s in 0 8192; do sweep 192 65536 $s; done
for s in 0 16384; do sweep 128 32768 $s; done
timeout 150 $W/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.SplitWalksAgainstReference' > $out/logs/bwd-split.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/logs/bwd-split.log; grep -E "^\[  (PASSED|FAILED)" $out/logs/bwd-split.log
tar -C $out -czf $out/logs.tgz logs && rm -rf $out/logs
