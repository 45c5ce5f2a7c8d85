#!/usr/bin/env bash
# Session 11, run 12 (H100): Nsight Compute of the warp-specialised dense forward (final commit):
# the paper's compressed forward (with SASS source counters) and the [main] window forward: what
# bounds them now (tensor pipe, issue, stalls on the mbarriers, shared memory).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NCU=/usr/local/cuda/bin/ncu
timeout 240 $NCU --profile-from-start off --set full --import-source no --kernel-name regex:"compressed_fwd" -o "$W/cmp" python3 bench/profile_nsa.py --shape paper --part topn > "$out/ncu-run.log" 2>&1; echo "ncu cmp rc=$?"
$NCU -i "$W/cmp.ncu-rep" --page details > "$out/ncu-compressed-fwd-paper.txt" 2>&1
$NCU -i "$W/cmp.ncu-rep" --page source --csv --print-source sass 2>&1 | xz > "$out/ncu-compressed-fwd-sass.csv.xz"
timeout 200 $NCU --profile-from-start off --set full --import-source no --kernel-name regex:"window_fwd" -o "$W/win" python3 bench/profile_nsa.py --shape main > "$out/ncu-run-win.log" 2>&1; echo "ncu win rc=$?"
$NCU -i "$W/win.ncu-rep" --page details > "$out/ncu-window-fwd-main.txt" 2>&1
for f in "$out"/ncu-*-fwd-*.txt; do echo "== $f"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Issue Slots Busy|Registers Per|Achieved Occupancy|Executed Ipc Active|No Eligible|Warp Cycles Per Issued" "$f" | head -14; done
