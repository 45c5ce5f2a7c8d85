// nsajit_context: one GPU (a CUcontext), its kernels, and the launch path.
#pragma once

#include "CudaDriver.h"
#include "KernelCache.h"
#include "StreamWorkspaces.h"
#include "TuningDb.h"
#include "Validate.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

struct nsajit_context {
  std::shared_ptr<const nsajit::rt::CudaDriver> drv;
  CUdevice device = 0;
  CUcontext cuContext = nullptr;
  bool retainedPrimary = false;
  nsajit::rt::DeviceInfo info;
  std::atomic<int> archOverride{0}; // 0 = automatic, else 80 / 90
  bool checkPointers = true;        // NSAJIT_CHECK_POINTERS != 0
  std::atomic<int> backwardSplitTokens{0}; // 0 = automatic (dkdvSplits, Backward.h)
  std::atomic<std::uint64_t> selectionMapLimit{nsajit::kDefaultSelectionMapLimit}; // BackwardOptions
  std::unique_ptr<nsajit::rt::KernelCache> kernels;
  std::unique_ptr<nsajit::rt::StreamWorkspaces> workspaces; // freed before the context is released
  std::shared_ptr<nsajit::rt::TuningDb> tuning; // never null
  bool useTuning = true;                         // NSAJIT_TUNING != off
  bool selectedTwoKernel = true;                 // NSAJIT_SELECTED_TWO_KERNEL != 0 (selectedFirstKernel)

  ~nsajit_context();
};

namespace nsajit::rt {

// Creates a context for `ordinal` (-1: the current context's device, else 0). Throws Error.
std::unique_ptr<nsajit_context> createContext(int ordinal);

// The kernel architecture of the context (override or chooseArch). Throws UNSUPPORTED.
Arch contextArch(const nsajit_context &ctx);
// The context's architecture. On a GPU nsajit cannot serve, `check` (the
// request's argument checks, run against sm_80) reports argument errors first.
template <typename Check> Arch archAfterArgumentChecks(const nsajit_context &ctx, Check check) {
  try {
    return contextArch(ctx);
  } catch (const Error &) {
    check(Arch::SM80);
    throw;
  }
}
void setContextArch(nsajit_context &ctx, int arch);

std::string describeDevice(const nsajit_context &ctx);

// The selected branch's two-kernel schedules (sm_90a, a config without a
// tile), forward and dQ: a wgmma union kernel runs first and computes the
// tiles whose union of blocks is small (local selections); the default or
// tuned kernel runs after it, on the CTAs it left (KernelAbi.h, tokenDone).
// The first kernel's spec for the forward or dQ spec `spec`, if the schedule
// applies (and NSAJIT_SELECTED_TWO_KERNEL does not turn it off).
std::optional<KernelSpec> selectedFirstKernel(const nsajit_context &ctx, const KernelSpec &spec);

// Whether launches consult the tuning database: it has entries and NSAJIT_TUNING is not off.
bool usesTuningEntries(const nsajit_context &ctx);

// The tuned tile for the forward of `spec` at batch x seqLen, if the context has one (and uses them).
std::optional<TileConfig> tunedTile(const nsajit_context &ctx, const KernelSpec &spec, int batch, int seqLen);

// Validates the request, loads the kernel and launches it on `stream`; a config
// with default tiles gets the tuned tile when there is one. Throws Error.
void launchForward(nsajit_context &ctx, const ForwardRequest &req, void *stream);

// Checks that every span lies inside memory the driver knows (when it can tell).
// The context must be current.
void checkDeviceSpans(const nsajit_context &ctx, const SpanList &spans);

// cuLaunchKernel of a loaded kernel on `stream` (the context must be current);
// a failure throws Error naming the kernel and its launch dimensions, plus `note`.
void launchKernel(const nsajit_context &ctx, const LoadedKernel &kernel, const std::array<unsigned, 3> &grid,
                  unsigned threads, unsigned sharedBytes, void **params, void *stream, const char *note = "");

// nsajit_check_indices.
void checkIndices(nsajit_context &ctx, const nsajit_config *config, int batch, int seqLen,
                  const nsajit_tensor *indices, void *stream);

} // namespace nsajit::rt
