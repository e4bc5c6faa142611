/* Device buffer layout: io slots packed in order, the rest by liveness (arena.c), split into
 * buffers no larger than a device allows. */
#include "layout.h"

#include "arena.h"

uint64_t vn_align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Liveness packing into chunks of at most cap bytes, for when one arena would be larger: the
 * arena planner's greedy (largest first, each at the lowest offset that collides with no
 * time-overlapping tensor) run over the chunks in turn, a new chunk opened for a tensor no chunk
 * has room for, so no tensor straddles two. A tensor larger than cap opens a chunk of its size.
 * Sets offsets[i] and chunk[i] per request, chunk_bytes[c] (room for n entries) and
 * *out_chunks. */
static vnrt_status pack_chunks(vnrt_context *ctx, const vn_arena_request *req, int32_t n,
                               uint64_t cap, uint64_t align, uint64_t *offsets, int32_t *chunk,
                               uint64_t *chunk_bytes, int32_t *out_chunks) {
  *out_chunks = 0;
  int32_t *by_size = vn_calloc(ctx, (size_t)(n ? n : 1), sizeof *by_size);
  int32_t *placed = vn_calloc(ctx, (size_t)(n ? n : 1), sizeof *placed);
  if (!by_size || !placed) {
    vn_free(ctx, by_size), vn_free(ctx, placed);
    return vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory planning %d tensors", n);
  }
  /* The arena planner's order: size descending, then first use (insertion sort, stable). */
  for (int32_t i = 0; i < n; ++i) {
    int32_t j = i;
    while (j > 0 &&
           (req[by_size[j - 1]].size < req[i].size || (req[by_size[j - 1]].size == req[i].size &&
                                                       req[by_size[j - 1]].first > req[i].first))) {
      by_size[j] = by_size[j - 1];
      --j;
    }
    by_size[j] = i;
  }
  int32_t n_chunks = 0, n_placed = 0;
  for (int32_t k = 0; k < n; ++k) {
    int32_t i = by_size[k];
    uint64_t size = vn_align_up(req[i].size, align);
    offsets[i] = 0;
    chunk[i] = -1;
    for (int32_t c = 0; c < n_chunks && chunk[i] < 0 && size <= cap; ++c) {
      uint64_t best = UINT64_MAX;
      for (int32_t a = -1; a < n_placed; ++a) {
        uint64_t cand = 0;
        if (a >= 0) {
          int32_t q = placed[a];
          if (chunk[q] != c || req[q].last < req[i].first || req[i].last < req[q].first) continue;
          cand = offsets[q] + vn_align_up(req[q].size, align);
        }
        if (cand >= best || cand + size > cap) continue;
        bool ok = true;
        for (int32_t b = 0; b < n_placed && ok; ++b) {
          int32_t q = placed[b];
          if (chunk[q] != c || req[q].last < req[i].first || req[i].last < req[q].first) continue;
          uint64_t qs = offsets[q], qe = qs + vn_align_up(req[q].size, align);
          if (cand < qe && qs < cand + size) ok = false;
        }
        if (ok) best = cand;
      }
      if (best != UINT64_MAX) chunk[i] = c, offsets[i] = best;
    }
    if (chunk[i] < 0) {
      chunk[i] = n_chunks;
      chunk_bytes[n_chunks++] = 0;
    }
    placed[n_placed++] = i;
    if (offsets[i] + size > chunk_bytes[chunk[i]]) chunk_bytes[chunk[i]] = offsets[i] + size;
  }
  vn_free(ctx, by_size);
  vn_free(ctx, placed);
  *out_chunks = n_chunks;
  return VNRT_OK;
}

void vn_layout_free(vnrt_context *ctx, vn_layout *layout) {
  vn_free(ctx, layout->buf_bytes);
  *layout = (vn_layout){0};
}

vnrt_status vn_layout_plan(vnrt_context *ctx, vn_slot *slots, int32_t n, uint64_t cap,
                           uint64_t align, vn_layout *out) {
  vn_layout_free(ctx, out);
  size_t n_alloc = (size_t)(n ? n : 1);
  /* Each buffer holds at least one slot, but an arena chunk of empty slots only: n+1. */
  out->buf_bytes = vn_calloc(ctx, n_alloc + 1, sizeof *out->buf_bytes);
  vn_arena_request *req = vn_calloc(ctx, n_alloc, sizeof *req);
  uint64_t *offs = vn_calloc(ctx, n_alloc, sizeof *offs);
  int32_t *req_of = vn_calloc(ctx, n_alloc, sizeof *req_of);
  int32_t *chunk = vn_calloc(ctx, n_alloc, sizeof *chunk);
  vnrt_status status = VNRT_OK;
  if (!out->buf_bytes || !req || !offs || !req_of || !chunk) {
    status = vn_error(ctx, VNRT_ERROR_OUT_OF_MEMORY, "out of memory planning tensors");
  }
  int32_t n_req = 0, io_open = -1; /* the io buffer being filled */
  for (int32_t t = 0; t < n && status == VNRT_OK; ++t) {
    vn_slot *s = &slots[t];
    req_of[t] = -1;
    s->buffer = -1;
    if (s->kind == VN_SLOT_IO) {
      /* The next slot of the open io buffer, or a new buffer where it would pass the limit. */
      uint64_t size = vn_align_up(s->bytes, align);
      if (io_open < 0 ||
          (cap && out->buf_bytes[io_open] > 0 && out->buf_bytes[io_open] + size > cap)) {
        io_open = out->n_bufs++;
      }
      s->buffer = io_open;
      s->offset = out->buf_bytes[io_open];
      out->buf_bytes[io_open] += size;
      out->io_bytes += size;
    } else if (s->kind == VN_SLOT_ARENA) {
      req[n_req] = (vn_arena_request){s->bytes, s->first, s->last};
      req_of[t] = n_req++;
    }
  }
  out->n_io_bufs = out->n_bufs;
  uint64_t total = 0;
  int32_t n_chunks = 0;
  if (status == VNRT_OK) status = vn_arena_plan(ctx, req, n_req, align, offs, &total);
  if (status == VNRT_OK && n_req > 0) {
    if (!cap || total <= cap) {
      /* One arena, as packed. */
      n_chunks = 1;
      out->buf_bytes[out->n_bufs] = total;
    } else {
      status = pack_chunks(ctx, req, n_req, cap, align, offs, chunk, &out->buf_bytes[out->n_bufs],
                           &n_chunks);
    }
  }
  if (status == VNRT_OK) {
    for (int32_t c = 0; c < n_chunks; ++c) out->arena_bytes += out->buf_bytes[out->n_bufs + c];
    for (int32_t t = 0; t < n; ++t) {
      if (req_of[t] < 0) continue;
      slots[t].offset = offs[req_of[t]];
      slots[t].buffer = out->n_bufs + chunk[req_of[t]];
    }
    for (int32_t t = 0; t < n; ++t) {
      if (slots[t].kind != VN_SLOT_ALIAS) continue;
      slots[t].offset = slots[slots[t].alias].offset;
      slots[t].buffer = slots[slots[t].alias].buffer;
    }
    out->n_bufs += n_chunks;
  }
  vn_free(ctx, req);
  vn_free(ctx, offs);
  vn_free(ctx, req_of);
  vn_free(ctx, chunk);
  return status;
}
