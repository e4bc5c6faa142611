// DeepSeek-V4 attention helpers (docs/ops.md, "DeepSeek-V4 attention"), one invocation per
// result element, no shared memory and no barrier:
//   OP 1 kv_compress entries: an invocation per (entry row i, channel k < d). Slots: 0 a,
//        1 z, 2 ape, 3 state_a, 4 state_z (all f32, [.., c*d]), 7 pos0 (i32, read only);
//        5 entries [N, d], 6 entry_pos [N] (i32).
//   OP 2 kv_compress states: an invocation per (row r < m, channel of c*d), which writes
//        state rows m*(c-1) + r and, with overlap, r; same inputs, 5 state_a', 6 state_z'.
//        They may be the input states themselves (the executor's in-place updates,
//        docs/executor.md): push word 5 bit 0 says slot 5 is slot 3, bit 1 slot 6 slot 4;
//        such a state gets only the rows that change.
//   OP 10 kv_compress, a decode step (T = 1, N = 1) with both states in place: an
//        invocation per channel k < d computes entry channel k, then writes the changed rows
//        of state channels k and, with overlap, d + k, which only it reads (the entry reads
//        channels k and d + k). Slots: 0 a, 1 z, 2 ape, 3 pos0, 5 state_a, 6 state_z (read
//        and written), 7 entries, the scratch binding entry_pos: OP 1, 2 and 8 in one
//        dispatch.
//   OP 8 kv_compress states without overlap (c = 1), after the host copied state_a and
//        state_z to 5 and 6: an invocation per (run row i, channel), writing the state row of
//        position pos0 + i where it lies in the window still open after the run (T = 0: one
//        invocation, which only checks pos0).
//   OP 7, 3, 4 kv_scatter: 7 clears the scratch words below; 3, an invocation per row i,
//        marks the first i whose cache row pos/div is >= S, or that i is the latest row for
//        its cache row (the later one wins); 4, an invocation per element of rows (slot 1,
//        DT1), copies the winners into the cache copy (slot 5), pos slot 2, or reports the
//        first bad row and writes nothing.
//   OP 9 kv_scatter of one row (N = 1): an invocation per element copies it, or reports its
//        row >= S and writes nothing (what 7, 3, 4 do for one row, in one dispatch).
//   OP 6 index_scores on CPU devices: the combination of the head products (below).
//   kv_compress reports pos0 < 0 (and reads nothing).
//   OP 5 index_scores: an invocation per (t, j): slots 0 q[T, Hi, Di], 1 k[S, Di],
//        2 w[T, Hi], 3 pos[T] (i32); 5 s[T, S] (f32).
// Positions p < pos0 of kv_compress come from the state rows of docs/ops.md: the open window
// W0 = pos0/m at row m*overlap + p mod m and, with overlap, window W0-1 at row p mod m.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 64
#include "common.glsl"

#define VN_ERR_POS0 8u // pos0 < 0 (vk_exec.c words it)

layout(push_constant) uniform PC { uint u[16]; } pc;

// ---- kv_compress --------------------------------------------------------------------------
// push: T m d c N, and for OP 2 the in-place bits (c = 1 + overlap; cd = c*d)

layout(set = 0, binding = 8, std430) buffer VnScratchU { uint u[]; } scr_u;

// OP 10's slots (above) differ from OP 1, 2 and 8's.
int kvc_pos0() { return OP == 10u ? ldi3(0u) : ldi7(0u); }
float kvc_sa(uint i) { return OP == 10u ? ldf5(i) : ldf3(i); }
float kvc_sz(uint i) { return OP == 10u ? ldf6(i) : ldf4(i); }
void kvc_entry(uint i, float v) {
  if (OP == 10u) stf7(i, v);
  else stf5(i, v);
}
void kvc_entry_pos(uint i, int v) {
  if (OP == 10u) scr_u.u[i] = uint(v);
  else sti6(i, v);
}

// a and z' (ape added) of position p (>= 0, within the run or the state), channel ch of c*d.
void kvc_load(uint p, uint ch, out float av, out float zv) {
  uint m = pc.u[1], cd = pc.u[2] * pc.u[3];
  uint pos0 = uint(kvc_pos0());
  if (p >= pos0) {
    uint t = p - pos0;
    av = ldf0(t * cd + ch);
    zv = ldf1(t * cd + ch) + ldf2((p % m) * cd + ch);
    return;
  }
  uint w0 = pos0 / m, row = p % m;
  if (p / m == w0) row += m * (pc.u[3] - 1u);
  av = kvc_sa(row * cd + ch);
  zv = kvc_sz(row * cd + ch);
}

// Whether pos0 is usable; reports it (once) when not. The run then fails.
bool pos0_ok(uint g) {
  int p0 = kvc_pos0();
  if (p0 < 0 && g == 0u) vn_report(VN_ERR_POS0, p0, 0u, 0u);
  return p0 >= 0;
}

void kv_compress_entries(uint g) {
  uint T = pc.u[0], m = pc.u[1], d = pc.u[2], c = pc.u[3], N = pc.u[4];
  if (g >= N * d || !pos0_ok(g)) return;
  uint i = g / d, k = g % d;
  uint pos0 = uint(kvc_pos0()), w0 = pos0 / m;
  uint closed = (pos0 + T) / m - w0;
  if (i >= closed) {
    kvc_entry(g, 0.0);
    if (k == 0u) kvc_entry_pos(i, -1);
    return;
  }
  uint w = w0 + i;
  // Slots: with overlap, series A (channel k) of window w-1 first, then series B (d + k) of
  // window w; without, the m positions of window w.
  bool has_a = c == 2u && w >= 1u;
  uint first = has_a ? (w - 1u) * m : w * m;
  uint n = has_a ? 2u * m : m;
  float mx = -1.0 / 0.0;
  for (uint s = 0u; s < n; ++s) {
    uint p = first + s;
    uint ch = (c == 2u && p >= w * m) ? d + k : k;
    float av, zv;
    kvc_load(p, ch, av, zv);
    mx = max(mx, zv);
  }
  float den = 0.0, num = 0.0;
  for (uint s = 0u; s < n; ++s) {
    uint p = first + s;
    uint ch = (c == 2u && p >= w * m) ? d + k : k;
    float av, zv;
    kvc_load(p, ch, av, zv);
    float e = exp(zv - mx);
    den += e;
    num += e * av;
  }
  kvc_entry(g, den > 0.0 ? num / den : 0.0);
  if (k == 0u) kvc_entry_pos(i, int(w * m));
}

// Rows of the states after the run (W' = (pos0 + T) / m, the open window): row m*(c-1) + r
// holds position W'*m + r and, with overlap, row r position (W'-1)*m + r. A position not yet
// seen keeps the row's contents; p >= pos0 comes from the run; p < pos0 from the old state row
// kvc_load picks: row m*(c-1) + r itself when p lies in W0 = pos0 / m for the first, and for
// the second row r itself (W'-1 = W0-1) or row m + r (W'-1 = W0: a window closed). So an
// invocation reads only the two rows it writes (and the run), both before writing: in place,
// no row is read after another invocation wrote it, whatever T. Unchanged rows are not written
// in place.
void kv_compress_states(uint g) {
  uint T = pc.u[0], m = pc.u[1], d = pc.u[2], c = pc.u[3], inplace = pc.u[5];
  uint cd = c * d;
  if (g >= m * cd || !pos0_ok(g)) return;
  uint r = g / cd, ch = g % cd;
  uint pos0 = uint(kvc_pos0()), end = pos0 + T, w0 = pos0 / m;
  uint wn = end / m; // the open window after this run
  uint ob = (m * (c - 1u) + r) * cd + ch, oa = r * cd + ch;
  float ab = kvc_sa(ob), zb = kvc_sz(ob), aa = kvc_sa(oa), za = kvc_sz(oa);
  uint pb = wn * m + r;
  bool new_b = pb >= pos0 && pb < end; // else the row keeps its contents
  if (new_b) kvc_load(pb, ch, ab, zb);
  bool new_a = false;
  if (c == 2u && wn >= 1u) {
    uint pa = (wn - 1u) * m + r; // < end: always seen
    new_a = pa >= pos0 || pa / m == w0;
    if (new_a) kvc_load(pa, ch, aa, za);
  }
  if (new_b || (inplace & 1u) == 0u) stf5(ob, ab);
  if (new_b || (inplace & 2u) == 0u) stf6(ob, zb);
  if (c == 2u) {
    if (new_a || (inplace & 1u) == 0u) stf5(oa, aa);
    if (new_a || (inplace & 2u) == 0u) stf6(oa, za);
  }
}

void kv_compress_run_rows(uint g) {
  uint T = pc.u[0], m = pc.u[1], d = pc.u[2];
  if (!pos0_ok(g) || g >= T * d) return; // T = 0: one invocation, for pos0's check
  uint i = g / d, ch = g % d;
  uint pos0 = uint(kvc_pos0()), p = pos0 + i;
  if (p < ((pos0 + T) / m) * m) return; // a closed window: its row is not kept
  float av, zv;
  kvc_load(p, ch, av, zv);
  uint o = (p % m) * d + ch;
  stf5(o, av);
  stf6(o, zv);
}

// OP 10 (above): push T = 1, N = 1 and in-place bits 3. Entry channel k reads state channels
// k and d + k only (kvc_load), and OP 2 and 8's updates of a row channel read that channel
// alone, so this invocation does all of them, the entry first.
void kv_compress_step(uint k) {
  uint m = pc.u[1], d = pc.u[2], c = pc.u[3];
  if (k >= d || !pos0_ok(k)) return;
  kv_compress_entries(k);
  if (c == 1u) {
    kv_compress_run_rows(k);
    return;
  }
  uint pos0 = uint(kvc_pos0());
  bool closes = (pos0 + 1u) % m == 0u; // rows r < m take window W0 then
  uint r0 = closes ? 0u : pos0 % m, r1 = closes ? m : r0 + 1u;
  for (uint r = r0; r < r1; ++r) {
    kv_compress_states(r * 2u * d + k);
    kv_compress_states(r * 2u * d + d + k);
  }
}

// ---- kv_scatter -----------------------------------------------------------------------------
// push: N rows S row_elems div. Scratch words (as uint, scr_u): 0 the smallest i whose row is
// >= S (0xffffffff: none), 1 + r the last i (plus 1) that goes to cache row r.

void kv_scatter_init(uint g) {
  uint S = pc.u[2];
  if (g <= S) scr_u.u[g] = g == 0u ? 0xffffffffu : 0u;
}

void kv_scatter_mark(uint i) {
  uint N = pc.u[0], S = pc.u[2], div = pc.u[4];
  if (i >= N) return;
  int p = ldi2(i);
  if (p < 0) return;
  uint r = uint(p) / div;
  if (r >= S) {
    atomicMin(scr_u.u[0], i);
  } else {
    atomicMax(scr_u.u[1u + r], i + 1u); // the later row wins
  }
}

void kv_scatter_rows(uint g) {
  uint n = pc.u[1], S = pc.u[2], row_elems = pc.u[3], div = pc.u[4];
  if (g >= n) return;
  uint bad = scr_u.u[0];
  if (bad != 0xffffffffu) {
    if (g == 0u) vn_report(VN_ERR_ROW, int(uint(ldi2(bad)) / div), S, bad);
    return;
  }
  uint i = g / row_elems, e = g % row_elems;
  int p = ldi2(i);
  if (p < 0) return;
  uint r = uint(p) / div;
  if (scr_u.u[1u + r] != i + 1u) return;
  uint to = r * row_elems + e;
  if (DT1 == DT_F32 || DT1 == DT_I32) stw5(to, ldw1(g));
  else st16_5(to, ld16_1(g));
}

void kv_scatter_one(uint e) {
  uint S = pc.u[2], row_elems = pc.u[3], div = pc.u[4];
  if (e >= row_elems) return;
  int p = ldi2(0u);
  if (p < 0) return;
  uint r = uint(p) / div;
  if (r >= S) {
    if (e == 0u) vn_report(VN_ERR_ROW, int(r), S, 0u);
    return;
  }
  uint to = r * row_elems + e;
  if (DT1 == DT_F32 || DT1 == DT_I32) stw5(to, ldw1(e));
  else st16_5(to, ld16_1(e));
}

// ---- index_scores ---------------------------------------------------------------------------
// push: T S Hi Di ratio

void index_scores(uint g) {
  uint T = pc.u[0], S = pc.u[1], Hi = pc.u[2], Di = pc.u[3], ratio = pc.u[4];
  if (g >= T * S) return;
  uint t = g / S, j = g % S;
  int p = ldi3(t);
  if (p < 0 || j >= (uint(p) + 1u) / ratio) {
    stf5(g, -1.0 / 0.0);
    return;
  }
  float s = 0.0;
  for (uint h = 0u; h < Hi; ++h) {
    uint qo = (t * Hi + h) * Di;
    float dot = 0.0;
    for (uint e = 0u; e < Di; ++e) dot += ldf0(qo + e) * ldf1(j * Di + e);
    s += ldf2(t * Hi + h) * max(dot, 0.0);
  }
  stf5(g, s);
}

// OP 6: index_scores from the head products P[t - t0][h][j] = q[t, h] . k[j] that matmul.comp
// left in scratch (CPU devices): an invocation per (t - t0, j) of the chunk of pc.u[5] rows
// from t0 = pc.u[6]. push: T S Hi Di ratio rows t0
void index_combine(uint g) {
  uint S = pc.u[1], Hi = pc.u[2], ratio = pc.u[4], rows = pc.u[5], t0 = pc.u[6];
  if (g >= rows * S) return;
  uint tl = g / S, j = g % S, t = t0 + tl;
  int p = ldi3(t);
  if (p < 0 || j >= (uint(p) + 1u) / ratio) {
    stf5(t * S + j, -1.0 / 0.0);
    return;
  }
  float s = 0.0;
  for (uint h = 0u; h < Hi; ++h) s += ldf2(t * Hi + h) * max(scratch.f[(tl * Hi + h) * S + j], 0.0);
  stf5(t * S + j, s);
}

void main() {
  uint g = vn_gid();
  if (OP == 1u) {
    kv_compress_entries(g);
  } else if (OP == 2u) {
    kv_compress_states(g);
  } else if (OP == 8u) {
    kv_compress_run_rows(g);
  } else if (OP == 10u) {
    kv_compress_step(g);
  } else if (OP == 3u) {
    kv_scatter_mark(g);
  } else if (OP == 7u) {
    kv_scatter_init(g);
  } else if (OP == 4u) {
    kv_scatter_rows(g);
  } else if (OP == 9u) {
    kv_scatter_one(g);
  } else if (OP == 5u) {
    index_scores(g);
  } else {
    index_combine(g);
  }
}
