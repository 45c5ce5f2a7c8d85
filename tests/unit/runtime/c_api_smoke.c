/* Plain C99 against libnsajit.so: proves nsajit.h is C, that the shared
 * library exports what the header declares, and checks the basic contract in
 * the process configuration ctest gives it:
 *   c_api_smoke nodriver   NSAJIT_LIBCUDA points nowhere: NO_DEVICE, "libcuda"
 *   c_api_smoke fake       NSAJIT_LIBCUDA is the fake driver: a context, a launch
 */
#include "nsajit/nsajit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NSAJIT_TEST_HAVE_COMPILER
#define NSAJIT_TEST_HAVE_COMPILER 0
#endif

static int failures = 0;
#define CHECK(cond)                                                                                                  \
  do {                                                                                                               \
    if (!(cond)) {                                                                                                   \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, nsajit_last_error()); \
      ++failures;                                                                                                    \
    }                                                                                                                \
  } while (0)

static void common(void) {
  nsajit_config cfg;
  nsajit_kernel_info info;
  nsajit_tensor t = {0, 0, 0, 0};
  CHECK(strcmp(nsajit_version(), NSAJIT_VERSION_STRING) == 0);
  CHECK(nsajit_abi_version() == NSAJIT_ABI_VERSION);
  CHECK(strstr(nsajit_compiler_version(), "nsajit") != NULL);
  CHECK(nsajit_config_init(&cfg) == NSAJIT_OK);
  CHECK(cfg.struct_size == sizeof(nsajit_config) && cfg.group == 16 && cfg.window == 512);
  CHECK(nsajit_selected_forward(NULL, &cfg, 1, 1, &t, &t, &t, &t, &t, &t, NULL) == NSAJIT_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(nsajit_last_error(), "ctx is NULL") != NULL);
  memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  CHECK(nsajit_kernel_query(NULL, &cfg, NSAJIT_BRANCH_SELECTED, 90, &info) == NSAJIT_OK);
  CHECK(strcmp(info.kernel_name, "nsa_selected_fwd") == 0 && info.threads_per_cta > 0);
}

static int nodriver(void) {
  nsajit_context *ctx = NULL;
  nsajit_status st = nsajit_context_create(&ctx, 0);
  CHECK(st == NSAJIT_ERROR_NO_DEVICE);
  CHECK(ctx == NULL);
  CHECK(strstr(nsajit_last_error(), "libcuda") != NULL);
  printf("no driver: %s: %s\n", nsajit_status_string(st), nsajit_last_error());
  return 0;
}

static int fake(void) {
  enum { T = 64, H = 1, G = 16, D = 128, N = 16 };
  nsajit_context *ctx = NULL;
  nsajit_config cfg;
  char buf[1024];
  void *mem[6];
  size_t sizes[6] = {(size_t)T * H * G * D * 2, (size_t)T * H * D * 2, (size_t)T * H * D * 2,
                     (size_t)T * H * N * 4,     (size_t)T * H * G * D * 2, (size_t)T * H * G * 4};
  nsajit_tensor q, k, v, idx, out, lse;
  nsajit_status st;
  int i;
  CHECK(nsajit_context_create(&ctx, 0) == NSAJIT_OK);
  if (!ctx)
    return 1;
  CHECK(nsajit_device_info(ctx, buf, sizeof buf) == NSAJIT_OK);
  CHECK(strstr(buf, "Fake H100") != NULL);
  printf("%s\n", buf);
  nsajit_config_init(&cfg);
  cfg.num_kv_heads = H;
  /* Host memory as "device" memory (the fake never touches it; NSAJIT_CHECK_POINTERS=0). */
  for (i = 0; i < 6; ++i)
    mem[i] = aligned_alloc(256, sizes[i]);
  q.data = (uint64_t)(uintptr_t)mem[0], q.stride_batch = T * H * G * D, q.stride_token = H * G * D, q.stride_head = D;
  k.data = (uint64_t)(uintptr_t)mem[1], k.stride_batch = T * H * D, k.stride_token = H * D, k.stride_head = D;
  v = k;
  v.data = (uint64_t)(uintptr_t)mem[2];
  idx.data = (uint64_t)(uintptr_t)mem[3], idx.stride_batch = T * H * N, idx.stride_token = H * N, idx.stride_head = N;
  out = q;
  out.data = (uint64_t)(uintptr_t)mem[4];
  lse.data = (uint64_t)(uintptr_t)mem[5], lse.stride_batch = T * H * G, lse.stride_token = H * G, lse.stride_head = 1;

  st = nsajit_selected_forward(ctx, &cfg, 1, T, &q, &k, &v, &idx, &out, &lse, NULL);
  printf("selected forward: %s %s\n", nsajit_status_string(st), nsajit_last_error());
  if (NSAJIT_TEST_HAVE_COMPILER) {
    nsajit_cache_counters stats;
    CHECK(st == NSAJIT_OK);
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    CHECK(nsajit_cache_stats(ctx, &stats) == NSAJIT_OK);
    CHECK(stats.compiles + stats.disk_hits == 1 && stats.modules_loaded == 1);
  } else {
    CHECK(st == NSAJIT_ERROR_UNSUPPORTED);
    CHECK(strstr(nsajit_last_error(), "without the kernel compiler") != NULL);
  }
  /* Misaligned output: rejected, naming the argument. */
  out.data += 2;
  CHECK(nsajit_selected_forward(ctx, &cfg, 1, T, &q, &k, &v, &idx, &out, &lse, NULL) ==
        NSAJIT_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(nsajit_last_error(), "out.data") != NULL);
  CHECK(nsajit_context_destroy(ctx) == NSAJIT_OK);
  for (i = 0; i < 6; ++i)
    free(mem[i]);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: c_api_smoke nodriver|fake\n");
    return 2;
  }
  common();
  if (strcmp(argv[1], "nodriver") == 0)
    nodriver();
  else if (strcmp(argv[1], "fake") == 0)
    fake();
  else
    return 2;
  if (failures)
    fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
