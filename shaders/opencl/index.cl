/* Indexing: run-time index checks (one work-group finds the first bad position, so that the
 * host can name it before any gather writes), embedding gather and topk. */

#define NO_ERROR 0x7fffffff

/* The first position p in [0, n) whose row idx[p] (+ off[p % H] when has_off) is outside
 * [0, bound), or NO_ERROR; every item of the work-group gets it. */
static int first_bad_index(__global const uchar *idx, __global const uchar *off, int has_off,
                           int H, long n, long bound, __local int *red) {
  int lid = get_local_id(0), wg = get_local_size(0);
  int first = NO_ERROR;
  for (long p = lid; p < n; p += wg) {
    long v = (long)ldi(idx, p) + (has_off ? (long)ldi(off, p % H) : 0);
    if (v < 0 || v >= bound) {
      first = (int)p;
      break; /* an item's positions only grow */
    }
  }
  return wg_min_i(red, first);
}

/* err[slot] = that first bad position, or -1. */
__kernel void check_index(TENSOR(idx), TENSOR(off), int has_off, int H, long n, long bound,
                          TENSOR(err), int slot, __local int *red) {
  int first = first_bad_index(PTR(idx), PTR(off), has_off, H, n, bound, red);
  if (get_local_id(0) == 0) ((__global int *)PTR(err))[slot] = first == NO_ERROR ? -1 : first;
}

/* check_index for checks read after the run (their consumers clamp or skip bad indices):
 * also err[slot + 1] = idx[first] (its value, for the error message: by the time the host
 * reads it, the index tensor's memory may hold a later node's result). */
__kernel void check_index_val(TENSOR(idx), TENSOR(off), int has_off, int H, long n, long bound,
                              TENSOR(err), int slot, __local int *red) {
  int first = first_bad_index(PTR(idx), PTR(off), has_off, H, n, bound, red);
  if (get_local_id(0) == 0) {
    __global int *e = (__global int *)PTR(err);
    e[slot] = first == NO_ERROR ? -1 : first;
    e[slot + 1] = first == NO_ERROR ? 0 : ldi(PTR(idx), first);
  }
}

/* moe_hash_route: position t*(k+1) stands for ids[t] in [0, V); t*(k+1)+1+i for
 * tid2eid[ids[t], i] in [0, E) (checked only when ids[t] is valid). Read after the run
 * (moe_hash_route clamps): err[slot + 1] and err[slot + 2] keep the bad position's token id
 * and table entry for the message. */
__kernel void check_hash_route(TENSOR(ids), TENSOR(tab), long T, int V, int k, int E,
                               TENSOR(err), int slot, __local int *red) {
  int lid = get_local_id(0), wg = get_local_size(0);
  int first = NO_ERROR;
  for (long t = lid; t < T && first == NO_ERROR; t += wg) {
    int id = ldi(PTR(ids), t);
    if (id < 0 || id >= V) {
      first = (int)(t * (k + 1));
      break;
    }
    for (int i = 0; i < k; ++i) {
      int e = ldi(PTR(tab), (long)id * k + i);
      if (e < 0 || e >= E) {
        first = (int)(t * (k + 1) + 1 + i);
        break;
      }
    }
  }
  first = wg_min_i(red, first);
  if (lid == 0) {
    __global int *er = (__global int *)PTR(err);
    er[slot] = first == NO_ERROR ? -1 : first;
    long t = first == NO_ERROR ? 0 : first / (k + 1), r = first == NO_ERROR ? 0 : first % (k + 1);
    int id = first == NO_ERROR ? 0 : ldi(PTR(ids), t);
    er[slot + 1] = id;
    er[slot + 2] = r > 0 ? ldi(PTR(tab), (long)id * k + r - 1) : 0;
  }
}

/* out[i, :] = table[ids[i], :], ids clamped to [0, V) (a bad one is reported after the run);
 * global (D, n). */
__kernel void embedding(TENSOR(table), int dt, TENSOR(ids), TENSOR(o), int dout, long D,
                        long n, long V) {
  long j = get_global_id(0), i = get_global_id(1);
  if (j >= D || i >= n) return;
  long row = clamp((long)ldi(PTR(ids), i), 0L, V - 1);
  st(PTR(o), dout, i * D + j, ld(PTR(table), dt, row * D + j));
}

/* Whether (va, ia) ranks before (vb, ib): larger first, ties to the lower index, NaN last. */
int ranks_before(float va, int ia, float vb, int ib) {
  if (isnan(va) || isnan(vb)) return isnan(vb) && (!isnan(va) || ia < ib);
  return va > vb || (va == vb && ia < ib);
}

/* Per row of x[rows, E]: the k largest, descending, by insertion into the index output. With
 * has_fill, the indices of -inf values become fill (their values stay -inf). */
__kernel void topk(TENSOR(x), int dx, TENSOR(vals), int dv, TENSOR(idx), long rows, int E,
                   int k, int has_fill, int fill) {
  long r = get_global_id(0);
  if (r >= rows) return;
  __global int *best = (__global int *)PTR(idx) + r * k;
  long xb = r * E;
  int have = 0;
  for (int i = 0; i < E; ++i) {
    float v = ld(PTR(x), dx, xb + i);
    int pos = have;
    while (pos > 0 && ranks_before(v, i, ld(PTR(x), dx, xb + best[pos - 1]), best[pos - 1])) {
      --pos;
    }
    if (pos >= k) continue;
    int last = have < k ? have : k - 1;
    for (int s = last; s > pos; --s) best[s] = best[s - 1];
    best[pos] = i;
    if (have < k) ++have;
  }
  for (int s = 0; s < k; ++s) {
    float v = ld(PTR(x), dx, xb + best[s]);
    st(PTR(vals), dv, r * k + s, v);
    if (has_fill && v == -INFINITY) best[s] = fill;
  }
}
