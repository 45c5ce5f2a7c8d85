// PTX -> machine code (a cubin) for the GPU of the current context.
//
// The driver's JIT is reached through its linker API (cuLinkCreate / AddData /
// Complete), not cuModuleLoadDataEx: the latter compiles one module at a time in a
// process, while the linker compiles on the calling thread, so the thread pool of
// nsajit_prepare compiles a configuration's kernels in parallel. H100, driver 580, the
// 19 kernels of the paper's configuration on 16 threads: 2.6 s through
// cuModuleLoadDataEx, 0.54 s through the linker (bench/jit, session 8 run 1).
//
// The cubin goes to the disk cache beside the PTX, under a key that adds the driver
// version (its JIT made the code), so a cached kernel loads without any JIT.
#pragma once

#include "CudaDriver.h"

#include <string>

namespace nsajit::rt {

// The disk-cache key of the machine code compiled from the PTX stored under `ptxKey`.
std::string machineCodeKey(const std::string &ptxKey, int driverVersion);

// Compiles `ptx` for the current context's GPU. Throws Error(NSAJIT_ERROR_COMPILE_ERROR)
// naming `kernel`, `gpu` and the JIT's log when the driver rejects it.
std::string compileToMachineCode(const CudaDriver &drv, const std::string &ptx, const std::string &kernel,
                                 const std::string &gpu);

} // namespace nsajit::rt
