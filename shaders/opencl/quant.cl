/* Quantization support (docs/ops.md): hadamard. */

/* hadamard: each row x[D] (D a power of 2) becomes H_D·x·scale (scale = D^-1/2, from the
 * host), H_D the Sylvester-order Walsh–Hadamard matrix. One work-group per row: the row is
 * widened to f32 in local memory, then log2(D) stages of butterflies (u, v) -> (u + v, u - v)
 * at stride h = 1, 2, 4, ..., the same additions in the same order as the CPU reference, so
 * the results agree exactly. */
__kernel void hadamard(TENSOR(x), int dx, TENSOR(o), int dout, long D, float scale,
                       __local float *row) {
  long base = get_group_id(0) * D;
  int lid = get_local_id(0), wg = get_local_size(0);
  for (long i = lid; i < D; i += wg) row[i] = ld(PTR(x), dx, base + i);
  barrier(CLK_LOCAL_MEM_FENCE);
  for (long h = 1; h < D; h *= 2) {
    /* Pair p of D/2: j = its block's start (2h·(p / h)) + its place in the block (p % h). */
    for (long p = lid; p < D / 2; p += wg) {
      long j = (p / h) * 2 * h + p % h;
      float u = row[j], v = row[j + h];
      row[j] = u + v;
      row[j + h] = u - v;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (long i = lid; i < D; i += wg) st(PTR(o), dout, base + i, row[i] * scale);
}
