#include "nsajit/compiler/Compiler.h"

#include "nsajit/compiler/KernelAbi.h"
#include "nsajit/compiler/Pipeline.h"
#include "nsajit/compiler/SpecIR.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Config/llvm-config.h"

#include <chrono>
#include <fmt/format.h>

using namespace mlir;

#ifndef NSAJIT_VERSION_STRING
#define NSAJIT_VERSION_STRING "0.0.0"
#endif

namespace nsajit {

std::string compilerVersion() {
  // Bump kCodegenRevision whenever generated code changes for the same spec.
  constexpr int kCodegenRevision = 42;
  return fmt::format("nsajit {} codegen {} mlir {} abi {}", NSAJIT_VERSION_STRING, kCodegenRevision,
                     LLVM_VERSION_STRING, kForwardKernelParamCount);
}

std::string compileKernel(const KernelSpec &requested, CompileResult &out, const CompileOptions &opts) {
  if (std::string err = validate(requested); !err.empty())
    return err;
  KernelSpec spec = withDefaultTiles(requested);
  if (std::string err = validate(spec); !err.empty())
    return err;

  auto start = std::chrono::steady_clock::now();
  DialectRegistry registry;
  registerCompilerDialects(registry);
  MLIRContext ctx(registry, MLIRContext::Threading::DISABLED);
  ctx.loadAllAvailableDialects();

  std::string diagnostics;
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
    if (d.getSeverity() == DiagnosticSeverity::Error)
      diagnostics += d.str() + "\n";
    return success();
  });

  OwningOpRef<ModuleOp> module = buildSpecModule(&ctx, spec);
  if (failed(verify(*module)))
    return fmt::format("internal error: the IR built for '{}' does not verify: {}", spec.str(), diagnostics);

  PassManager pm(&ctx);
  buildNsaToGpuPipeline(pm, spec.arch);
  buildGpuToPtxPipeline(pm, spec.arch);
  if (opts.dumpIR)
    pm.enableIRPrinting();
  if (failed(pm.run(*module)))
    return fmt::format("compiling '{}' failed: {}", spec.str(), diagnostics);

  std::string ptx = extractPtx(*module);
  if (ptx.empty())
    return fmt::format("compiling '{}' produced no PTX", spec.str());
  out.ptx = std::move(ptx);
  out.kernelName = spec.kernelName();
  out.spec = spec;
  out.compileMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return {};
}

} // namespace nsajit
