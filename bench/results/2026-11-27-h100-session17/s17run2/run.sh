#!/usr/bin/env bash
# Session 17, run 2 (H100): Nsight Compute's per-instruction stall samples (SourceCounters) of the
# window [main] forward and dK/dV at T = 64k: which instructions the warps wait at.
out="$1"; mkdir -p "$out/logs"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1); echo "ncu: $NCU"
prof() {  # $1 = name, $2 = kernel regex
  name=$1 re=$2
  timeout 200 $NCU --clock-control none -k "regex:$re" --launch-skip 0 -c 1 --import-source no \
    --section SourceCounters --section WarpStateStats --section InstructionStats -o $W/$name \
    python3 bench/sweep_tiles.py --branch window --dk 128 --T 65536 --backward --tiles 0x0x0 > $out/logs/ncu-$name.txt 2>&1
  echo "ncu $name rc=$?"
  $NCU -i $W/$name.ncu-rep --page source --csv --print-source sass > $out/logs/sass-$name.csv 2>&1
  echo "source page rc=$? lines=$(wc -l < $out/logs/sass-$name.csv)"; head -3 $out/logs/sass-$name.csv | cut -c1-600
  $NCU -i $W/$name.ncu-rep --page details > $out/logs/details-$name.txt 2>&1
  grep -iE "stall|Warp Cycles|sampl" $out/logs/details-$name.txt | head -30
}
prof win-fwd "nsa_window_fwd"
prof win-dkdv "nsa_window_bwd_dkdv"
tar -C $out -czf $out/logs.tgz logs && rm -rf $out/logs
