/* vnir text: parse -> print -> re-parse -> print must be a fixed point; a graph that parses is
 * compiled for the CPU and, when it compiles, run with zero inputs. Nothing may crash, leak or
 * hang on any input. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "graph.h"

/* The plan compiler's cost model bounds one run (docs/ops.md, "Attribute limits and empty
 * tensors"): plans whose estimated work is over this are refused, so every plan that compiles
 * runs in milliseconds, whatever its shapes. Its device memory is bounded by the budget, and
 * the zero inputs the harness allocates by FUZZ_MAX_INPUT_BYTES (an input no node reads costs
 * no work, whatever its size). */
#define FUZZ_MAX_WORK (4u << 20)
#define FUZZ_MAX_INPUT_BYTES ((size_t)16 << 20)
#define FUZZ_MAX_INPUT (64 * 1024)

static size_t total_input_bytes(const vnrt_graph *g) {
  size_t total = 0;
  for (int32_t i = 0; i < g->n_inputs; ++i) {
    size_t bytes = vnrt_tensor_type_bytes(&g->values[g->inputs[i]].type);
    if (bytes > FUZZ_MAX_INPUT_BYTES - total) return FUZZ_MAX_INPUT_BYTES + 1;
    total += bytes;
  }
  return total;
}

static void compile_and_run(vnrt_context *ctx, const vnrt_graph *g) {
  vnrt_device *cpu = NULL;
  if (vnrt_device_select(ctx, "cpu", &cpu) != VNRT_OK) return;
  vnrt_plan_desc desc = {.device_memory_limit = 64u << 20, .max_work = FUZZ_MAX_WORK};
  vnrt_plan *plan = NULL;
  if (vnrt_plan_create(ctx, g, cpu, &desc, &plan) != VNRT_OK) return;
  vnrt_plan_info info = {.struct_size = sizeof info};
  FUZZ_CHECK(vnrt_plan_get_info(plan, &info) == VNRT_OK && info.work <= FUZZ_MAX_WORK,
             "a plan that compiles is within its work limit");
  if (total_input_bytes(g) <= FUZZ_MAX_INPUT_BYTES) {
    bool bound = true;
    for (int32_t i = 0; i < vnrt_graph_input_count(g) && bound; ++i) {
      vnrt_value v = vnrt_graph_input(g, i, NULL);
      vnrt_tensor_type t;
      if (vnrt_graph_value_type(g, v, &t) != VNRT_OK) break;
      size_t bytes = vnrt_tensor_type_bytes(&t);
      void *zeros = calloc(1, bytes ? bytes : 1);
      bound =
          zeros && vnrt_plan_set_input(plan, vnrt_graph_value_name(g, v), zeros, bytes) == VNRT_OK;
      free(zeros);
    }
    if (bound) (void)vnrt_plan_run(plan);
  }
  vnrt_plan_destroy(plan);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > FUZZ_MAX_INPUT) return 0;
  vnrt_context *ctx = fuzz_context();
  vnrt_graph *g = NULL;
  if (vnrt_graph_parse(ctx, (const char *)data, size, "fuzz", &g) != VNRT_OK) return 0;
  char *text = NULL;
  FUZZ_CHECK(vnrt_graph_print(g, &text) == VNRT_OK, "a parsed graph must print");
  vnrt_graph *g2 = NULL;
  FUZZ_CHECK(vnrt_graph_parse(ctx, text, strlen(text), "printed", &g2) == VNRT_OK,
             "a printed graph must parse again");
  char *text2 = NULL;
  FUZZ_CHECK(vnrt_graph_print(g2, &text2) == VNRT_OK, "a re-parsed graph must print");
  FUZZ_CHECK(strcmp(text, text2) == 0, "print -> parse -> print must be a fixed point");
  compile_and_run(ctx, g);
  vnrt_free(ctx, text);
  vnrt_free(ctx, text2);
  vnrt_graph_destroy(g2);
  vnrt_graph_destroy(g);
  return 0;
}
