#!/usr/bin/env bash
# Session 16, run 3 (H100): the committed pivot walk and first-chunks-first order (commit in
# BUILD_INFO): the backward matrices, then the selected branch's dK/dV split lengths on random
# and local indices ([paper] and [main] head dims, T = 64k): with the initial block's splits
# started first, longer splits may now pay on local indices too (s15run5: 16384 tokens took
# random 19.3 -> 17.7 ms but local 21.7 -> 27.6).
out="$1"; mkdir -p "$out/logs"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=name --format=csv,noheader
W=/tmp/nsajit; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu.tar.xz; cat $W/nsajit/BUILD_INFO
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
timeout 200 $W/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference:GpuBackward.SplitWalksAgainstReference' > $out/logs/bwd.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/logs/bwd.log; grep "\] FAIL" $out/logs/bwd.log | head; grep -E "^\[  (PASSED|FAILED)" $out/logs/bwd.log
for dk in 192 128; do for s in 0 16384 32768 4096 0; do
  timeout 90 python3 bench/sweep_tiles.py --branch selected --dk $dk --T 65536 --backward --kernels --tiles 0x0x0 \
    --backward-split $s 2>&1 | grep -v -i warn | sed "s/^/dk$dk split $s: /" | tee -a $out/logs/split.log | python3 -c '
import sys, json
for line in sys.stdin:
    head, _, rest = line.partition(": ")
    try: d = json.loads(rest.rsplit(" (", 1)[0])
    except Exception: print(line.strip()); continue
    k = dict((n + str(i), ms) for i, (n, ms) in enumerate(d["kernels"]))
    print(head, d["indices"], "bwd", round(d["bwd_ms"], 2), "dkdv", k.get("nsa_selected_bwd_dkdv5"), "err", d["error"])'
done; done
tar -C $out -czf $out/logs.tgz logs && rm -rf $out/logs
