// ptxas, when one is installed, turns the generated PTX into machine code (a cubin) in
// a child process, so the kernels of a configuration assemble in parallel.
//
// Why not the driver: its JIT (cuModuleLoadDataEx) compiles one module at a time per
// process (H100, driver 580, the paper configuration's 19 kernels: 2.3 s one after
// the other, 2.6 s from 16 threads), and its linker API (cuLinkComplete), which does
// run in parallel (0.54 s), compiles PTX as relocatable code: the window forward then
// takes 141 registers instead of 128 and runs about 30 % slower (bench/jit, session 8).
// ptxas in whole-program mode makes the same code as the driver's JIT.
//
// A run longer than $NSAJIT_PTXAS_TIMEOUT_S (default 300) is killed and the kernel goes
// through the driver's JIT.
// Found at $NSAJIT_PTXAS ("off": never use one), else $CUDA_HOME/bin/ptxas,
// /usr/local/cuda/bin/ptxas, then ptxas on $PATH. Without one, kernels go through the
// driver's JIT as before: slower to compile cold, the same once cached.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

namespace nsajit::rt {

class Ptxas {
public:
  // The process's ptxas, looked up (and its version read) on first use; null when
  // there is none that runs. Thread-safe. The version comes from the disk cache
  // where an earlier process ran `ptxas --version` on the same file (its path,
  // inode, size and times).
  static std::shared_ptr<const Ptxas> get();
  // Tests only: look it up again on the next get() (the environment may have changed).
  static void resetForTesting();

  const std::string &path() const { return path_; }
  const std::string &version() const { return version_; } // "Cuda compilation tools, release 13.0, V13.0.88"

  // Assembles `ptx` for `arch` ("sm_90a", "sm_86"): the cubin, or nullopt with
  // `error` set (ptxas's messages, or why it could not run).
  std::optional<std::string> assemble(const std::string &ptx, const std::string &arch, std::string &error) const;

  // Stops using this ptxas in the process (its machine code does not load here, e.g.
  // it is newer than the driver): get() returns null from now on. Logs `why` once.
  void disable(const std::string &why) const;

  Ptxas(std::string path, std::string version, double timeoutSeconds)
      : path_(std::move(path)), version_(std::move(version)), timeoutSeconds_(timeoutSeconds) {}

private:
  std::string path_, version_;
  double timeoutSeconds_; // a run past it is killed: NSAJIT_PTXAS_TIMEOUT_S, default 300
  mutable std::atomic<bool> disabled_{false};
};

} // namespace nsajit::rt
