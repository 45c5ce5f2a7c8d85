// Control interface of the fake CUDA driver (FakeCuda.cpp), a libcuda stand-in
// for the machines without a GPU: it implements the Driver API entry points the
// runtime resolves, with host memory as "device" memory, and records launches.
// Tests reach these functions through dlopen/dlsym on the same library file.
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The parameters of a launch are read as the kernel's PTX declares them
 * (.param .u64/.s64/.b64: 8 bytes, .u32/.s32/.b32/.f32: 4 bytes), like the real
 * driver does; 8-byte ones go to u64[] and 4-byte ones to i32[], in order. */
typedef struct FakeCudaLaunch {
  int count;             /* launches so far, this one included */
  void *context;         /* current context at the launch */
  void *function;
  unsigned grid[3], block[3], shared;
  void *stream;
  int num_u64, num_i32;  /* parameters the kernel declares, by size */
  uint64_t u64[64];      /* forward: 7 pointers, 18 strides; backward: 15 pointers, 39 strides */
  int32_t i32[8];        /* seqLen, kvLen */
  char kernel_name[64];
} FakeCudaLaunch;

void fakecuda_reset(void);
void fakecuda_set_device(int count, int cc_major, int cc_minor, const char *name, int smem_optin, int pageable);
void fakecuda_set_init_result(int result);
/* Next cuModuleLoadDataEx calls fail with `result` and write `log` to the JIT error log (0: succeed). */
void fakecuda_set_module_load_error(int result, const char *log);
/* The next cuModuleLoadData call (machine code) fails with `result` (0: succeeds). */
void fakecuda_set_image_load_error(int result);
int fakecuda_ptx_loads(void);        /* successful cuModuleLoadDataEx (PTX, the driver's JIT) since reset */
int fakecuda_image_loads(void);      /* successful cuModuleLoadData (machine code) since reset */
void fakecuda_set_max_threads_per_block(int n);
/* cuLaunchKernel returns `result` without launching (0: launch normally). */
void fakecuda_set_launch_result(int result);
/* cuEventElapsedTime returns the last launch's dynamic shared memory in KiB (1), its grid x / 1000 (2),
 * or always 1 ms (0). */
void fakecuda_set_elapsed_from_shared(int on);
void fakecuda_get_last_launch(FakeCudaLaunch *out);
/* Launch `index` (0 = the first since fakecuda_reset); returns 0, or -1 when there is no such launch. */
int fakecuda_get_launch(int index, FakeCudaLaunch *out);
int fakecuda_launch_count(void);     /* launches since fakecuda_reset */
int fakecuda_loaded_modules(void);   /* currently loaded */
int fakecuda_module_loads(void);     /* successful loads since reset */
int fakecuda_primary_refcount(int device);
int fakecuda_max_dynamic_shared(void); /* last CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES set */
int fakecuda_live_allocations(void);

#ifdef __cplusplus
}
#endif
