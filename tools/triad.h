/* A STREAM-like triad, a[i] = b[i] + 0.5·c[i] over three float arrays, on a team of threads:
 * the memory-bandwidth baseline of vnrt-bench and of vnrt-generate --roofline (docs/bench.md).
 * Bytes are counted as STREAM counts them: two arrays read and one written per pass. */
#ifndef VNRT_TOOLS_TRIAD_H_
#define VNRT_TOOLS_TRIAD_H_

#include <stddef.h>

typedef struct tool_triad {
  float *a, *b, *c;
  size_t n; /* floats per array */
  int threads;
} tool_triad;

/* Three arrays of about total_bytes in all (far beyond the caches for a bandwidth figure), each
 * thread's slice first touched by that thread, and one warm-up pass. Returns 0, or -1 (t left
 * empty) when the memory or a thread cannot be had. threads is clamped to [1, 1024]. */
int tool_triad_init(tool_triad *t, size_t total_bytes, int threads);

/* One pass on t->threads threads (the caller is one of them); its wall time in seconds, or a
 * negative value when a thread could not be started. */
double tool_triad_pass(tool_triad *t);

/* One pass on the calling thread alone, over all of the arrays; its wall time in seconds. */
double tool_triad_pass_one_thread(tool_triad *t);

/* Reads b and c once on the team (no stores): evicts the caches before a cold timed run. */
void tool_triad_evict(tool_triad *t);

/* The bandwidth of a pass that took `seconds`, in GB/s (0 for seconds <= 0). */
double tool_triad_gbps(const tool_triad *t, double seconds);

void tool_triad_free(tool_triad *t);

#endif
