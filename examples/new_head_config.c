/* Embedding nsajit through its C API: describe a head configuration no library
 * ships (here Dk = 192, Dv = 128, G = 4, l' = 32), print what nsajit generates
 * for it (CTA shape, shared memory; registers once loaded) for every kernel,
 * and, where there is a GPU, load them. Build: part of the CMake build
 * (build/examples/new_head_config); run it from anywhere. */
#include <nsajit/nsajit.h>

#include <stdio.h>

static int report(nsajit_context *ctx, const nsajit_config *cfg, nsajit_branch branch, nsajit_kernel_pass pass) {
  nsajit_kernel_info info = {0};
  info.struct_size = sizeof info;
  if (nsajit_kernel_query2(ctx, cfg, branch, pass, 90, &info) != NSAJIT_OK) {
    fprintf(stderr, "  %s\n", nsajit_last_error());
    return 1;
  }
  printf("  %-22s %4d threads %6d B shared", info.kernel_name, info.threads_per_cta, info.shared_memory_bytes);
  if (info.num_regs >= 0)
    printf("  %3d registers", info.num_regs);
  printf("\n");
  return 0;
}

int main(void) {
  nsajit_config cfg;
  nsajit_config_init(&cfg);
  cfg.head_dim_qk = 192;
  cfg.head_dim_v = 128;
  cfg.num_kv_heads = 8;
  cfg.group = 4;
  cfg.slc_block = 32;
  cfg.slc_count = 8;
  printf("nsajit %s, %s\n", nsajit_version(), nsajit_compiler_version());

  nsajit_context *ctx = NULL;
  if (nsajit_context_create(&ctx, 0) != NSAJIT_OK) {
    printf("no GPU (%s): generating sm_90a kernels without loading them\n", nsajit_last_error());
    ctx = NULL;
  }
  const nsajit_branch branches[] = {NSAJIT_BRANCH_COMPRESSED, NSAJIT_BRANCH_SELECTED, NSAJIT_BRANCH_WINDOW};
  const nsajit_kernel_pass passes[] = {NSAJIT_PASS_FORWARD, NSAJIT_PASS_BACKWARD_PRE, NSAJIT_PASS_BACKWARD_DQ,
                                       NSAJIT_PASS_BACKWARD_DKDV};
  int failures = 0;
  for (int b = 0; b < 3; ++b) {
    printf("branch %d:\n", (int)branches[b]);
    for (int p = 0; p < 4; ++p) failures += report(ctx, &cfg, branches[b], passes[p]);
  }
  printf("selection:\n");
  failures += report(ctx, &cfg, NSAJIT_BRANCH_COMPRESSED, NSAJIT_PASS_TOPN);
  nsajit_context_destroy(ctx);
  return failures ? 1 : 0;
}
