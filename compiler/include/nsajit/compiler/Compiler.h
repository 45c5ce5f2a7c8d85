// The compiler's entry point: KernelSpec -> nsa IR -> passes -> PTX.
#pragma once

#include "nsajit/compiler/KernelSpec.h"

#include <string>

namespace nsajit {

struct CompileResult {
  std::string ptx;          // PTX text for spec.arch
  std::string kernelName;   // entry point in the PTX
  KernelSpec spec;          // the spec with tile defaults filled in
  double compileMs = 0.0;   // wall time spent in MLIR + NVPTX
};

struct CompileOptions {
  bool dumpIR = false;      // print the IR after every pass to stderr
};

// Returns an empty string on success, otherwise an error message (invalid spec
// or a failed pass) and leaves `out` untouched.
std::string compileKernel(const KernelSpec &spec, CompileResult &out, const CompileOptions &opts = {});

// "nsajit <version> mlir <llvm version> abi <n>": part of every cache key, so a
// new compiler never loads PTX made by an old one.
std::string compilerVersion();

} // namespace nsajit
