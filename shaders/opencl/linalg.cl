/* Norms and activations: rms_norm and softmax (one work-group per row, local-memory
 * reductions) and swiglu (one work-item per element). */

/* x[rows, D] -> x*rsqrt(mean(x^2) + eps)*w; has_w = 0 for the unweighted form. */
__kernel void rms_norm(TENSOR(x), int dx, TENSOR(w), int dw, int has_w, TENSOR(o), int dout,
                       long D, float eps, __local float *red) {
  long row = get_group_id(0);
  int lid = get_local_id(0), wg = get_local_size(0);
  long base = row * D;
  float ss = 0.0f;
  for (long i = lid; i < D; i += wg) {
    float v = ld(PTR(x), dx, base + i);
    ss += v * v;
  }
  ss = wg_sum(red, ss);
  float inv = 1.0f / sqrt(ss / (float)D + eps);
  for (long i = lid; i < D; i += wg) {
    float y = ld(PTR(x), dx, base + i) * inv;
    if (has_w) y *= ld(PTR(w), dw, i);
    st(PTR(o), dout, base + i, y);
  }
}

/* rms_norm with one work-item per row of D (a multiple of 16), the squares summed in 16
 * lanes: for CPU drivers, where a work-group's reduction costs more than the row. global rows. */
__kernel void rms_norm_row16(TENSOR(x), int dx, TENSOR(w), int dw, int has_w, TENSOR(o),
                             int dout, long D, float eps, long rows) {
  long row = get_global_id(0);
  if (row >= rows) return;
  long base = row * D;
  float16 ss = 0.0f;
  for (long i = 0; i < D; i += 16) {
    float16 v = ld16(PTR(x), dx, base + i);
    ss += v * v;
  }
  float inv = 1.0f / sqrt(hsum8(ss.lo + ss.hi) / (float)D + eps);
  for (long i = 0; i < D; i += 16) {
    float16 y = ld16(PTR(x), dx, base + i) * inv;
    if (has_w) y *= ld16(PTR(w), dw, i);
    st16(PTR(o), dout, base + i, y);
  }
}

/* Softmax along an axis of length len with element stride inner: group g is (outer, inner). */
__kernel void softmax(TENSOR(x), int dx, TENSOR(o), int dout, long len, long inner,
                      __local float *red) {
  long g = get_group_id(0);
  int lid = get_local_id(0), wg = get_local_size(0);
  long base = (g / inner) * len * inner + g % inner;
  float mx = -INFINITY;
  for (long a = lid; a < len; a += wg) mx = fmax(mx, ld(PTR(x), dx, base + a * inner));
  mx = wg_max(red, mx);
  float sum = 0.0f;
  for (long a = lid; a < len; a += wg) sum += exp(ld(PTR(x), dx, base + a * inner) - mx);
  sum = wg_sum(red, sum);
  for (long a = lid; a < len; a += wg) {
    float e = exp(ld(PTR(x), dx, base + a * inner) - mx);
    st(PTR(o), dout, base + a * inner, e / sum);
  }
}

/* silu(min(g, limit))*clamp(u, -limit, limit); limit 0 = no clamp. */
__kernel void swiglu(TENSOR(g), int dg, TENSOR(u), int du, TENSOR(o), int dout, long n,
                     float limit) {
  long i = get_global_id(0);
  if (i >= n) return;
  float gv = ld(PTR(g), dg, i), uv = ld(PTR(u), du, i);
  if (limit > 0.0f) {
    if (gv > limit) gv = limit;
    if (uv > limit) uv = limit;
    if (uv < -limit) uv = -limit;
  }
  st(PTR(o), dout, i, gv * (1.0f / (1.0f + exp(-gv))) * uv);
}
