/* gen_weights: writes the deterministic weights of a config as a .safetensors file.
 *
 *   ./build/examples/deepseek/gen_weights --config examples/deepseek/configs/tiny.json \
 *       --out tiny.safetensors
 *
 * The same config always gives the same bytes (every tensor is seeded by init_seed and its
 * own name). Tensor names and dtypes: README.md. */
#include <stdio.h>
#include <string.h>

#include "ds_config.h"
#include "ds_weights.h"
#include "vnrt/vnrt.h"

static const char kUsage[] =
    "usage: gen_weights --config FILE.json --out FILE.safetensors [--quant Q]\n"
    "Writes the deterministic weights of a DeepSeek example config. --quant fp8fp4|fp8|fp4|none\n"
    "overrides the config's weight_format (fp8fp4: FP8 attention and shared expert, FP4 routed\n"
    "experts, each X codes with its X.scale).\n";

int main(int argc, char **argv) {
  const char *config = NULL, *out = NULL, *quant = NULL;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      config = argv[++i];
    } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
      out = argv[++i];
    } else if (!strcmp(argv[i], "--quant") && i + 1 < argc) {
      quant = argv[++i];
    } else if (!strcmp(argv[i], "--help")) {
      fputs(kUsage, stdout);
      return 0;
    } else {
      fputs(kUsage, stderr);
      return 2;
    }
  }
  if (!config || !out) {
    fputs(kUsage, stderr);
    return 2;
  }
  ds_config cfg;
  char err[DS_ERR_SIZE];
  if (ds_config_load(config, &cfg, err, sizeof err) ||
      (quant && ds_config_set_quant(&cfg, quant, err, sizeof err))) {
    fprintf(stderr, "gen_weights: %s\n", err);
    return 1;
  }
  vnrt_context *ctx = NULL;
  vnrt_context_desc desc = {0};
  desc.no_plugins = 1; /* no device work here */
  if (vnrt_context_create(&desc, &ctx) != VNRT_OK) {
    fprintf(stderr, "gen_weights: cannot create a vnrt context\n");
    return 1;
  }
  vnrt_status st = ds_weights_generate(ctx, &cfg, out, err, sizeof err);
  if (st != VNRT_OK) {
    fprintf(stderr, "gen_weights: %s: %s\n", vnrt_status_string(st), err);
    vnrt_context_destroy(ctx);
    return 1;
  }
  printf("wrote %s: %.1f MiB of weights for %s\n", out,
         (double)ds_weights_bytes(&cfg) / (1024.0 * 1024.0), config);
  vnrt_context_destroy(ctx);
  return 0;
}
