// Strided copy with optional dtype conversion: reshape, transpose, slice, concat (one
// dispatch per operand), hc_expand and cast. Iterates n elements over 4 dims (padded on the
// left); element (i0..i3) moves from in_base + sum(i_d * si_d) to out_base + sum(i_d * so_d).
// Slot 0: source (dtype DT0), slot 5: destination (DT5). OP 0: copy bits (DT0 == DT5);
// OP 1: cast with docs/ops.md's rules; OP 2: kv_write's row update: the n contiguous elements
// of slot 0 go to rows [pos, pos + n/row_elems) of slot 5, pos read from slot 2 (i32); a pos
// outside [0, rows - n/row_elems] is reported and nothing is written. OP 3: kv_write into a
// ring of `rows` rows: the n elements of slot 0 from in_base on (whole rows: the last
// min(T, rows) positions) go to rows (pos + in_base/row_elems + t) mod rows; pos < 0 is
// reported and nothing is written.
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"

#define VN_ERR_POS 9u // a ring's pos < 0 (vk_exec.c words it)

layout(push_constant) uniform PC {
  uint n;
  uint d1, d2, d3;
  uint si0, si1, si2, si3;
  uint so0, so1, so2, so3;
  uint in_base, out_base;
  uint rows, row_elems; // OP 2
} pc;

void main() {
  uint i = vn_gid();
  if (i >= pc.n) return;
  uint i3 = i % pc.d3, t = i / pc.d3;
  uint i2 = t % pc.d2;
  t /= pc.d2;
  uint i1 = t % pc.d1, i0 = t / pc.d1;
  if (OP == 2u) {
    int pos = ldi2(0u);
    uint t_rows = pc.n / pc.row_elems;
    if (pos < 0 || uint(pos) > pc.rows || t_rows > pc.rows - uint(pos)) {
      if (i == 0u) vn_report(VN_ERR_ROWS, pos, pc.rows, t_rows);
      return;
    }
    uint to = uint(pos) * pc.row_elems + i;
    if (DT0 == DT_F32 || DT0 == DT_I32) stw5(to, ldw0(i));
    else st16_5(to, ld16_0(i));
    return;
  }
  if (OP == 3u) {
    int pos = ldi2(0u);
    if (pos < 0) {
      if (i == 0u) vn_report(VN_ERR_POS, pos, 0u, 0u);
      return;
    }
    uint t = i / pc.row_elems, e = i % pc.row_elems;
    uint row = (uint(pos) + pc.in_base / pc.row_elems + t) % pc.rows;
    uint to = row * pc.row_elems + e;
    if (DT0 == DT_F32 || DT0 == DT_I32) stw5(to, ldw0(pc.in_base + i));
    else st16_5(to, ld16_0(pc.in_base + i));
    return;
  }
  uint src = pc.in_base + i0 * pc.si0 + i1 * pc.si1 + i2 * pc.si2 + i3 * pc.si3;
  uint dst = pc.out_base + i0 * pc.so0 + i1 * pc.so1 + i2 * pc.so2 + i3 * pc.so3;
  bool wide_in = DT0 == DT_F32 || DT0 == DT_I32;
  if (OP == 0u) {
    if (wide_in) stw5(dst, ldw0(src));
    else st16_5(dst, ld16_0(src));
    return;
  }
  if (DT5 == DT_I32) {
    sti5(dst, DT0 == DT_I32 ? ldi0(src) : vn_f2i(ldf0(src)));
  } else if (DT0 == DT_I32) {
    int v = ldi0(src);
    stf5(dst, DT5 == DT_F32 ? vn_i2f(v) : vn_i2f_odd(v));
  } else {
    stf5(dst, ldf0(src));
  }
}
