/* vnrt-validate's inputs: a splitmix64 stream per input, drawn by the case's generator. */
#include <math.h>
#include <stdlib.h>

#include "validate.h"

/* ---- Inputs ---------------------------------------------------------------------------- */

static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double next_unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

static void store(void *data, vnrt_dtype dt, int64_t i, double v) {
  switch (dt) {
    case VNRT_F32:
      ((float *)data)[i] = (float)v;
      break;
    case VNRT_F16:
      ((uint16_t *)data)[i] = vnrt_f32_to_f16((float)v);
      break;
    case VNRT_BF16:
      ((uint16_t *)data)[i] = vnrt_f32_to_bf16((float)v);
      break;
    case VNRT_I32:
      ((int32_t *)data)[i] = (int32_t)v;
      break;
    case VNRT_E4M3:
    case VNRT_E8M0:
      ((uint8_t *)data)[i] = (uint8_t)v; /* v is the code */
      break;
    default:
      break;
  }
}

double load(const void *data, vnrt_dtype dt, int64_t i) {
  switch (dt) {
    case VNRT_F32:
      return ((const float *)data)[i];
    case VNRT_F16:
      return vnrt_f16_to_f32(((const uint16_t *)data)[i]);
    case VNRT_BF16:
      return vnrt_bf16_to_f32(((const uint16_t *)data)[i]);
    case VNRT_I32:
      return ((const int32_t *)data)[i];
    default:
      return NAN;
  }
}

void *make_input(const input_spec *s, uint64_t seed) {
  size_t bytes = vnrt_tensor_type_bytes(&s->type);
  void *data = calloc(1, bytes ? bytes : 1);
  if (!data) return NULL;
  int64_t n = vnrt_tensor_type_numel(&s->type);
  int64_t row = s->type.rank ? s->type.dims[s->type.rank - 1] : 1;
  uint64_t st = seed;
  switch (s->gen) {
    case GEN_UNIFORM:
      for (int64_t i = 0; i < n; ++i)
        store(data, s->type.dtype, i, s->lo + (s->hi - s->lo) * next_unit(&st));
      break;
    case GEN_INDEX:
      for (int64_t i = 0; i < n; ++i)
        store(data, VNRT_I32, i, (double)(next_u64(&st) % (uint64_t)s->hi));
      break;
    case GEN_ARANGE:
      for (int64_t i = 0; i < n; ++i) store(data, VNRT_I32, i, s->lo + (double)i * s->hi);
      break;
    case GEN_E4M3:
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t r = next_u64(&st);
        const int e = (int)s->lo + (int)(r % (uint64_t)(s->hi - s->lo + 1));
        uint8_t c = (uint8_t)(((r >> 8) & 0x80) | (uint64_t)(e << 3) | ((r >> 16) & 7));
        if ((c & 0x7F) == 0x7F) c = (uint8_t)(c - 1); /* never NaN */
        store(data, VNRT_E4M3, i, c);
      }
      break;
    case GEN_E2M1:
      for (size_t i = 0; i < bytes; ++i) ((uint8_t *)data)[i] = (uint8_t)next_u64(&st);
      break;
    case GEN_E8M0:
      for (int64_t i = 0; i < n; ++i) {
        store(data, VNRT_E8M0, i, s->lo + (double)(next_u64(&st) % (uint64_t)(s->hi - s->lo + 1)));
      }
      break;
    case GEN_DYADIC:
      for (int64_t i = 0; i < n; ++i) {
        const double k = s->lo + (double)(next_u64(&st) % (uint64_t)(s->hi - s->lo + 1));
        store(data, s->type.dtype, i, k / 16.0);
      }
      break;
    case GEN_OPTINDEX:
      for (int64_t i = 0; i < n; ++i) {
        store(data, VNRT_I32, i, (double)(next_u64(&st) % (uint64_t)(s->hi + 1)) - 1.0);
      }
      break;
    case GEN_DISTINCT:
    case GEN_MASKED:
    case GEN_SCATTER:
    case GEN_ROWPERM: {
      int64_t span = s->gen == GEN_ROWPERM || s->gen == GEN_SCATTER ? (int64_t)s->hi : row;
      if (s->gen == GEN_SCATTER) row = n; /* one list over the whole tensor */
      int64_t *perm = malloc((size_t)span * sizeof *perm);
      if (!perm) {
        free(data);
        return NULL;
      }
      for (int64_t r = 0; r < n / row; ++r) {
        for (int64_t i = 0; i < span; ++i) perm[i] = i;
        for (int64_t i = span - 1; i > 0; --i) {
          int64_t j = (int64_t)(next_u64(&st) % (uint64_t)(i + 1));
          int64_t t = perm[i];
          perm[i] = perm[j], perm[j] = t;
        }
        const int64_t masked = row - 2 * (r % 5) > 0 ? row - 2 * (r % 5) : 0;
        for (int64_t i = 0; i < row; ++i) {
          double v = s->gen == GEN_ROWPERM ? (double)perm[i] : s->lo + s->hi * (double)perm[i];
          if (s->gen == GEN_MASKED && perm[i] < masked) v = -INFINITY;
          if (s->gen == GEN_SCATTER) {
            const int64_t div = (int64_t)s->lo;
            v = i % 4 == 3 ? -1.0 : (double)(perm[i] * div + perm[i] % div);
          }
          store(data, s->type.dtype, r * row + i, v);
        }
      }
      free(perm);
      break;
    }
  }
  return data;
}
