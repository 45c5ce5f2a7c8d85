#include "MachineCode.h"

#include <fmt/format.h>

#include <cstdint>
#include <vector>

namespace nsajit::rt {

std::string machineCodeKey(const std::string &ptxKey, int driverVersion) {
  return fmt::format("{} | machine code of driver {}", ptxKey, driverVersion);
}

namespace {

// Owns a link state; the cubin it returns lives until cuLinkDestroy.
struct LinkState {
  const CudaDriver &drv;
  CUlinkState state = nullptr;
  ~LinkState() {
    if (state)
      drv.cuLinkDestroy(state);
  }
};

std::string trimmed(const std::vector<char> &buf) {
  std::string s(buf.data()); // the driver NUL-terminates; the last byte is kept NUL
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

} // namespace

std::string compileToMachineCode(const CudaDriver &drv, const std::string &ptx, const std::string &kernel,
                                 const std::string &gpu) {
  std::vector<char> errorLog(32 * 1024, '\0');
  CUjit_option options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {errorLog.data(), reinterpret_cast<void *>(static_cast<std::uintptr_t>(errorLog.size() - 1))};
  LinkState link{drv};
  const char *step = "cuLinkCreate";
  CUresult r = drv.cuLinkCreate(2, options, values, &link.state);
  void *cubin = nullptr;
  std::size_t size = 0;
  if (r == CUDA_SUCCESS) {
    step = "cuLinkAddData";
    // The size includes the NUL: the driver parses PTX as a C string.
    r = drv.cuLinkAddData(link.state, CU_JIT_INPUT_PTX, const_cast<char *>(ptx.c_str()), ptx.size() + 1,
                          "nsajit.ptx", 0, nullptr, nullptr);
  }
  if (r == CUDA_SUCCESS) {
    step = "cuLinkComplete";
    r = drv.cuLinkComplete(link.state, &cubin, &size);
  }
  if (r == CUDA_SUCCESS && (!cubin || size == 0)) {
    r = CUDA_ERROR_INVALID_IMAGE;
    step = "cuLinkComplete (no machine code returned)";
  }
  if (r != CUDA_SUCCESS) {
    std::string log = trimmed(errorLog);
    std::string hint;
    if (r == CUDA_ERROR_UNSUPPORTED_PTX_VERSION)
      hint = fmt::format(" (the driver supports CUDA {}.{}; the PTX needs a newer NVIDIA driver)",
                         drv.driverVersion() / 1000, drv.driverVersion() % 1000 / 10);
    nsajit_status st = CudaDriver::statusFor(r);
    if (st == NSAJIT_ERROR_DRIVER_ERROR)
      st = NSAJIT_ERROR_COMPILE_ERROR;
    fail(st, "the driver's JIT ({}) failed for the PTX of {} on {}: {}{}{}{}", step, kernel, gpu,
         drv.errorText(r), hint, log.empty() ? "" : "; JIT log: ", log);
  }
  return std::string(static_cast<const char *>(cubin), size);
}

} // namespace nsajit::rt
