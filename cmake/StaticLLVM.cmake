# Debian's MLIR static libraries link LLVM through the shared libLLVM.so, and
# LLVMSupport pulls in shared zlib/zstd/z3. libnsajit.so must run where no LLVM
# is installed, so re-point those imported targets at LLVM's static archives
# (linked as one group: the linker keeps only the members it needs).
file(GLOB NSAJIT_LLVM_ARCHIVES "${LLVM_LIBRARY_DIR}/libLLVM*.a")
list(FILTER NSAJIT_LLVM_ARCHIVES EXCLUDE REGEX "libLLVM-[0-9]+\\.a$")
find_library(NSAJIT_LIBZ_STATIC NAMES libz.a REQUIRED)
find_library(NSAJIT_LIBZSTD_STATIC NAMES libzstd.a REQUIRED)

set_target_properties(LLVM PROPERTIES
  IMPORTED_LOCATION_RELWITHDEBINFO "${LLVM_LIBRARY_DIR}/libLLVMDemangle.a"
  IMPORTED_LOCATION "${LLVM_LIBRARY_DIR}/libLLVMDemangle.a"
  IMPORTED_SONAME_RELWITHDEBINFO ""
  IMPORTED_NO_SONAME TRUE
  INTERFACE_LINK_LIBRARIES
    "-Wl,--start-group;${NSAJIT_LLVM_ARCHIVES};-Wl,--end-group;${NSAJIT_LIBZSTD_STATIC};${NSAJIT_LIBZ_STATIC};rt;dl;m;pthread")
set_target_properties(LLVMSupport PROPERTIES
  INTERFACE_LINK_LIBRARIES "rt;dl;m;${NSAJIT_LIBZ_STATIC};${NSAJIT_LIBZSTD_STATIC};LLVMDemangle")
