/* Elementwise and shape kernels: broadcast binary ops, activations, clamp, cast, and one
 * strided copy that serves reshape, transpose, slice and concat. One work-item per element. */

#define BIN_ADD 0
#define BIN_SUB 1
#define BIN_MUL 2
#define BIN_DIV 3

/* Output element i's coordinates in dims (padded to 4) dotted with a stride vector. */
long bcast_offset(long i, long4 dims, long4 s) {
  long i3 = i % dims.w;
  i /= dims.w;
  long i2 = i % dims.z;
  i /= dims.z;
  long i1 = i % dims.y;
  long i0 = i / dims.y;
  return i0 * s.x + i1 * s.y + i2 * s.z + i3 * s.w;
}

__kernel void binary_op(TENSOR(a), int da, TENSOR(b), int db, TENSOR(o), int dout, int op,
                        long n, long4 dims, long4 sa, long4 sb) {
  long i = get_global_id(0);
  if (i >= n) return;
  float x = ld(PTR(a), da, bcast_offset(i, dims, sa));
  float y = ld(PTR(b), db, bcast_offset(i, dims, sb));
  float r;
  switch (op) {
    case BIN_ADD: r = x + y; break;
    case BIN_SUB: r = x - y; break;
    case BIN_MUL: r = x * y; break;
    default: r = x / y; break;
  }
  st(PTR(o), dout, i, r);
}

#define UN_NEG 0
#define UN_EXP 1
#define UN_SQRT 2
#define UN_RSQRT 3
#define UN_TANH 4
#define UN_RELU 5
#define UN_SIGMOID 6
#define UN_SILU 7
#define UN_GELU 8
#define UN_SOFTPLUS 9
#define UN_SQRT_SOFTPLUS 10
#define UN_SCALE 11
#define UN_CLAMP 12

/* p0, p1: the scale factor, or the clamp bounds (flags bit 0: min present, bit 1: max). */
__kernel void unary_op(TENSOR(x), int dx, TENSOR(o), int dout, int op, long n, float p0,
                       float p1, int flags) {
  long i = get_global_id(0);
  if (i >= n) return;
  float v = ld(PTR(x), dx, i);
  float r;
  switch (op) {
    case UN_NEG: r = -v; break;
    case UN_EXP: r = exp(v); break;
    case UN_SQRT: r = sqrt(v); break;
    case UN_RSQRT: r = 1.0f / sqrt(v); break;
    case UN_TANH: r = tanh(v); break;
    case UN_RELU: r = v > 0.0f ? v : 0.0f; break;
    case UN_SIGMOID: r = sigmoid_f(v); break;
    case UN_SILU: r = v * sigmoid_f(v); break;
    case UN_GELU: {
      const float k = 0.7978845608028654f; /* sqrt(2/pi) */
      r = 0.5f * v * (1.0f + tanh(k * (v + 0.044715f * v * v * v)));
      break;
    }
    case UN_SOFTPLUS: r = softplus_f(v); break;
    case UN_SQRT_SOFTPLUS: r = sqrt(softplus_f(v)); break;
    case UN_SCALE: r = v * p0; break;
    default: /* UN_CLAMP */
      r = v;
      if ((flags & 1) && r < p0) r = p0;
      if ((flags & 2) && r > p1) r = p1;
      break;
  }
  st(PTR(o), dout, i, r);
}

/* i32 -> f32 rounded to odd: a second rounding to f16/bf16 is then correctly rounded. */
float i32_to_f32_odd(int v) {
  uint u = v < 0 ? (uint)0 - (uint)v : (uint)v;
  int shift = 0;
  while ((u >> shift) >= (1u << 24)) ++shift;
  uint m = u >> shift;
  if (shift > 0 && (u & ((1u << shift) - 1u)) != 0) m |= 1u;
  float f = ldexp((float)m, shift);
  return v < 0 ? -f : f;
}

__kernel void cast_op(TENSOR(x), int dx, TENSOR(o), int dout, long n) {
  long i = get_global_id(0);
  if (i >= n) return;
  if (dx == dout) {
    if (dx == DT_F16 || dx == DT_BF16) {
      ((__global ushort *)PTR(o))[i] = ((__global const ushort *)PTR(x))[i];
    } else {
      ((__global uint *)PTR(o))[i] = ((__global const uint *)PTR(x))[i];
    }
  } else if (dout == DT_I32) {
    /* Truncation toward zero, saturating; NaN becomes 0 (the _sat conversion's rule). */
    ((__global int *)PTR(o))[i] = convert_int_sat_rtz(ld(PTR(x), dx, i));
  } else if (dx == DT_I32) {
    int v = ldi(PTR(x), i);
    st(PTR(o), dout, i, dout == DT_F32 ? convert_float_rte(v) : i32_to_f32_odd(v));
  } else {
    st(PTR(o), dout, i, ld(PTR(x), dx, i));
  }
}

/* Copies esize-byte elements: iteration index i (over dims) reads src at i's coordinates
 * dotted with ss (+ sbase) and writes dst at them dotted with ds (+ dbase), all in elements. */
__kernel void copy_strided(TENSOR(x), TENSOR(o), int esize, long n, long4 dims, long4 ss,
                           long sbase, long4 ds, long dbase) {
  long i = get_global_id(0);
  if (i >= n) return;
  long s = sbase + bcast_offset(i, dims, ss);
  long d = dbase + bcast_offset(i, dims, ds);
  if (esize == 2) {
    ((__global ushort *)PTR(o))[d] = ((__global const ushort *)PTR(x))[s];
  } else if (esize == 1) {
    PTR(o)[d] = PTR(x)[s];
  } else {
    ((__global uint *)PTR(o))[d] = ((__global const uint *)PTR(x))[s];
  }
}

/* A contiguous copy of n bytes (reshape, kv_write's cache copy): 64 bytes per work-item as one
 * vector (tensor offsets are multiples of 256), the last item's tail byte by byte. */
__kernel void copy_bytes(TENSOR(x), TENSOR(o), long n) {
  long i = get_global_id(0) * 64;
  if (i >= n) return;
  if (i + 64 <= n) {
    vstore16(vload16(0, (__global const uint *)(PTR(x) + i)), 0, (__global uint *)(PTR(o) + i));
    return;
  }
  for (; i < n; ++i) PTR(o)[i] = PTR(x)[i];
}

/* kv_write with ring: element i of the rows from t0 on (t = t0 + i / row) goes to row
 * (pos + t) mod S (pos checked >= 0 before). */
/* kv_write's pos check by item 0 (check_index_val's two slots, read after the run): slot
 * holds 0 when pos is outside [0, max_pos], else -1; slot + 1 holds pos. */
void kv_write_check(long pos, long max_pos, __global uchar *err, int slot) {
  if (get_global_id(0) != 0) return;
  __global int *e = (__global int *)err;
  e[slot] = pos < 0 || pos > max_pos ? 0 : -1;
  e[slot + 1] = (int)pos;
}

__kernel void kv_write_ring(TENSOR(nw), TENSOR(pos), TENSOR(o), int esize, long row, long t0,
                            long S, long n, TENSOR(err), int slot) {
  long i = get_global_id(0);
  kv_write_check(ldi(PTR(pos), 0), LONG_MAX, PTR(err), slot);
  if (i >= n || ldi(PTR(pos), 0) < 0) return; /* a bad pos (reported after the run) */
  long t = t0 + i / row, c = i % row;
  long d = (((long)ldi(PTR(pos), 0) + t) % S) * row + c, sidx = t * row + c;
  if (esize == 2) {
    ((__global ushort *)PTR(o))[d] = ((__global const ushort *)PTR(nw))[sidx];
  } else if (esize == 1) {
    PTR(o)[d] = PTR(nw)[sidx];
  } else {
    ((__global uint *)PTR(o))[d] = ((__global const uint *)PTR(nw))[sidx];
  }
}

/* kv_write: o[pos*row + i] = new[i] for i < n elements, pos read on the device; the rows
 * [pos, pos + T) must lie inside the cache, pos in [0, max_pos]: otherwise nothing is written
 * (item 0's check is reported after the run). */
__kernel void kv_write_rows(TENSOR(nw), TENSOR(pos), TENSOR(o), int esize, long row, long n,
                            long max_pos, TENSOR(err), int slot) {
  long i = get_global_id(0);
  long p = ldi(PTR(pos), 0);
  kv_write_check(p, max_pos, PTR(err), slot);
  if (i >= n || p < 0 || p > max_pos) return;
  long d = p * row + i;
  if (esize == 2) {
    ((__global ushort *)PTR(o))[d] = ((__global const ushort *)PTR(nw))[i];
  } else if (esize == 1) {
    PTR(o)[d] = PTR(nw)[i];
  } else {
    ((__global uint *)PTR(o))[d] = ((__global const uint *)PTR(nw))[i];
  }
}
