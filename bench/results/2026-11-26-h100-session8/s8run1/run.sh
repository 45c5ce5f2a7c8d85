#!/usr/bin/env bash
# Session 8, run 1 (H100): does the driver's PTX JIT run in parallel within a process?
# The 19 kernels of the paper configuration (nsajit prepare), then jit_load_timing
# (cuModuleLoadDataEx and cuLink*, 1 and 16 threads) and ptxas one after the other / 16 at once.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_CACHE_DIR=$W/cache CUDA_CACHE_PATH=$W/cuda
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; nproc
( time NSAJIT_VERBOSE=1 $W/nsajit/bin/nsajit prepare --dk 192 --dv 128 ) > "$out/prepare.log" 2>&1
tail -5 "$out/prepare.log"
mkdir -p $W/ptx
python3 - "$W/cache" "$W/ptx" <<'PY'
import os, struct, sys, re
src, dst = sys.argv[1], sys.argv[2]
for root, _, files in os.walk(src):
    for f in files:
        b = open(os.path.join(root, f), 'rb').read()
        if b[:8] != b'NSAJITC1': continue
        hs, = struct.unpack_from('<I', b, 12); kl, pl = struct.unpack_from('<QQ', b, 16)
        ptx = b[hs + kl:hs + kl + pl]
        name = re.search(rb'\.entry\s+(\w+)', ptx).group(1).decode()
        open(os.path.join(dst, f"{name}_{f[:8]}.ptx"), 'wb').write(ptx)
print(len(os.listdir(dst)), "ptx files")
PY
ls -la $W/ptx > "$out/ptx_files.txt"
.carry/jit/jit_load_timing --threads 16 $W/ptx/*.ptx > "$out/jit.log" 2>&1; echo "jit rc=$?"
grep SUMMARY "$out/jit.log"
{
  echo "== ptxas one after the other"
  for f in $W/ptx/*.ptx; do s=$(date +%s.%N); ptxas -arch=sm_90a -O3 $f -o $f.cubin; e=$(date +%s.%N); echo "$(echo "$e - $s" | bc) $(basename $f)"; done
  echo "== ptxas 19 at once"
  s=$(date +%s.%N); ls $W/ptx/*.ptx | xargs -P 19 -I{} ptxas -arch=sm_90a -O3 {} -o {}.cubin2; e=$(date +%s.%N); echo "wall $(echo "$e - $s" | bc)"
} > "$out/ptxas.log" 2>&1
grep -E "==|wall" "$out/ptxas.log"; awk '$1+0>0 {s+=$1} END {print "ptxas sum", s}' "$out/ptxas.log"
