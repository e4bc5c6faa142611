/* DeepSeek-V4 checkpoint directory: open, check against the config's inventory, look tensors
 * up, convert tid2eid and pack the routed experts for moe_ffn (checkpoint.h). */
#include "checkpoint.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models.h"
#include "vnrt/io.h"

#define INDEX_FILE "model.safetensors.index.json"

#define VN_MODEL_RETURN_IF_ERROR(expr) \
  do {                                 \
    vnrt_status s_ = (expr);           \
    if (s_ != VNRT_OK) return s_;      \
  } while (0)

typedef struct ck_shard {
  char *file; /* as weight_map names it */
  vnrt_safetensors *st;
  int32_t mapped; /* weight_map entries pointing here */
} ck_shard;

typedef struct ck_entry {
  char *name;
  int32_t shard;
  bool listed; /* in the config's inventory */
} ck_entry;

struct vn_checkpoint {
  vnrt_context *ctx;
  char *dir;
  vn_v4_config cfg;
  ck_shard *shards;
  int32_t n_shards;
  ck_entry *entries; /* sorted by name */
  int32_t n_entries;
  uint64_t bytes_by_kind[VN_V4_KIND_COUNT];
};

static char *str_dup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static char *path_join(const char *dir, const char *file) {
  size_t n = strlen(dir) + strlen(file) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, file);
  return p;
}

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const ck_entry *)a)->name, ((const ck_entry *)b)->name);
}

static ck_entry *find_entry(const vn_checkpoint *ck, const char *name) {
  ck_entry key = {.name = (char *)name};
  return bsearch(&key, ck->entries, (size_t)ck->n_entries, sizeof key, entry_cmp);
}

/* The io layer's message for a failed call, or a fallback. */
static const char *io_message(vnrt_context *ctx) {
  const char *m = vnrt_context_last_error(ctx);
  return m && m[0] ? m : "unknown error";
}

/* A shard name must be a plain file name inside the directory. */
static bool plain_file_name(const char *s) {
  return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Parses the index: weight_map into ck->entries and ck->shards (shards not yet opened);
 * *total_size from metadata.total_size. */
static vnrt_status parse_index(vn_checkpoint *ck, const char *path, uint64_t *total_size, char *err,
                               size_t err_size) {
  char *text = NULL;
  size_t len = 0;
  vnrt_status s = vn_model_read_file(path, (size_t)1 << 30, &text, &len, err, err_size);
  if (s != VNRT_OK) return s;
  json_tokener *tok = json_tokener_new();
  json_object *root =
      tok ? json_tokener_parse_ex(tok, text, (int)(len > INT32_MAX ? 0 : len)) : NULL;
  enum json_tokener_error jerr = tok ? json_tokener_get_error(tok) : json_tokener_error_depth;
  if (tok) json_tokener_free(tok);
  free(text);
  if (!root || jerr != json_tokener_success) {
    if (root) json_object_put(root);
    return vn_model_fail(
        err, err_size, VNRT_ERROR_INVALID_ARGUMENT, "%s: not valid JSON (%s)", path,
        jerr == json_tokener_continue ? "unexpected end of text" : json_tokener_error_desc(jerr));
  }
  json_object *meta = NULL, *ts = NULL, *map = NULL;
  s = VNRT_ERROR_INVALID_ARGUMENT;
  if (!json_object_is_type(root, json_type_object)) {
    vn_model_fail(err, err_size, s, "%s: the top level must be a JSON object", path);
  } else if (!json_object_object_get_ex(root, "metadata", &meta) ||
             !json_object_is_type(meta, json_type_object)) {
    vn_model_fail(err, err_size, s, "%s: metadata is missing or not an object", path);
  } else if (!json_object_object_get_ex(meta, "total_size", &ts) ||
             !json_object_is_type(ts, json_type_int) || json_object_get_int64(ts) < 0) {
    vn_model_fail(err, err_size, s,
                  "%s: metadata.total_size is missing or not a non-negative integer", path);
  } else if (!json_object_object_get_ex(root, "weight_map", &map) ||
             !json_object_is_type(map, json_type_object)) {
    vn_model_fail(err, err_size, s, "%s: weight_map is missing or not an object", path);
  } else {
    s = VNRT_OK;
    *total_size = (uint64_t)json_object_get_int64(ts);
  }
  size_t n = s == VNRT_OK ? (size_t)json_object_object_length(map) : 0;
  if (s == VNRT_OK && n > INT32_MAX / 2)
    s = vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT, "%s: too many tensors", path);
  if (s == VNRT_OK) {
    ck->entries = calloc(n ? n : 1, sizeof *ck->entries);
    ck->shards = calloc(n ? n : 1, sizeof *ck->shards);
    if (!ck->entries || !ck->shards)
      s = vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  if (s == VNRT_OK) {
    json_object_object_foreach(map, key, val) {
      if (!json_object_is_type(val, json_type_string) ||
          !plain_file_name(json_object_get_string(val))) {
        s = vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                          "%s: weight_map[\"%.200s\"] must be a shard file name in the "
                          "checkpoint directory",
                          path, key);
        break;
      }
      const char *file = json_object_get_string(val);
      int32_t sh = 0;
      while (sh < ck->n_shards && strcmp(ck->shards[sh].file, file) != 0) sh++;
      if (sh == ck->n_shards) {
        ck->shards[sh].file = str_dup(file);
        if (!ck->shards[sh].file) {
          s = vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
          break;
        }
        ck->n_shards++;
      }
      ck->shards[sh].mapped++;
      ck_entry *e = &ck->entries[ck->n_entries];
      e->name = str_dup(key);
      e->shard = sh;
      if (!e->name) {
        s = vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
        break;
      }
      ck->n_entries++;
    }
  }
  json_object_put(root);
  if (s == VNRT_OK) qsort(ck->entries, (size_t)ck->n_entries, sizeof *ck->entries, entry_cmp);
  return s;
}

typedef struct check_ctx {
  vn_checkpoint *ck;
  char *err;
  size_t err_size;
  vnrt_status status;
  int32_t missing; /* tensors of the inventory absent from the index */
  char first_missing[128];
} check_ctx;

static void fmt_dims(char *buf, size_t n, int32_t rank, const int64_t *dims) {
  size_t at = (size_t)snprintf(buf, n, "[");
  for (int32_t d = 0; d < rank && at < n; d++)
    at += (size_t)snprintf(buf + at, n - at, "%s%lld", d ? ", " : "", (long long)dims[d]);
  if (at < n) snprintf(buf + at, n - at, "]");
}

static int check_tensor(void *user, const vn_v4_tensor_spec *t) {
  check_ctx *c = user;
  vn_checkpoint *ck = c->ck;
  ck_entry *e = find_entry(ck, t->name);
  if (!e) {
    if (c->missing++ == 0) snprintf(c->first_missing, sizeof c->first_missing, "%s", t->name);
    return 0;
  }
  e->listed = true;
  const ck_shard *sh = &ck->shards[e->shard];
  const char *dtype = NULL;
  int32_t rank = 0;
  int64_t dims[VNRT_MAX_DIMS];
  size_t bytes = 0;
  if (vnrt_safetensors_find_stored(sh->st, t->name, &dtype, &rank, dims, NULL, &bytes) != VNRT_OK) {
    c->status = vn_model_fail(c->err, c->err_size, VNRT_ERROR_INVALID_ARGUMENT, "%s/%s: %s",
                              ck->dir, sh->file, io_message(ck->ctx));
    return 1;
  }
  if (strcmp(dtype, t->dtype) != 0) {
    c->status = vn_model_fail(c->err, c->err_size, VNRT_ERROR_INVALID_ARGUMENT,
                              "%s/%s: tensor '%s' has dtype %s, expected %s%s", ck->dir, sh->file,
                              t->name, dtype, t->dtype,
                              t->storage == VN_V4_STORE_FP4 || t->storage == VN_V4_STORE_FP8
                                  ? " (config.json expert_dtype / quantization_config)"
                                  : "");
    return 1;
  }
  bool same = rank == t->rank;
  for (int32_t d = 0; same && d < rank; d++) same = dims[d] == t->dims[d];
  if (!same) {
    char want[64], got[64];
    fmt_dims(want, sizeof want, t->rank, t->dims);
    fmt_dims(got, sizeof got, rank, dims);
    c->status = vn_model_fail(c->err, c->err_size, VNRT_ERROR_INVALID_ARGUMENT,
                              "%s/%s: tensor '%s' (%s) has shape %s, expected %s from config.json",
                              ck->dir, sh->file, t->name, t->dtype, got, want);
    return 1;
  }
  ck->bytes_by_kind[t->kind] += bytes;
  return 0;
}

static vnrt_status open_checked(vn_checkpoint *ck, char *err, size_t err_size) {
  char *path = path_join(ck->dir, "config.json");
  if (!path) return vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  vnrt_status s = vn_v4_config_load(path, &ck->cfg, err, err_size);
  free(path);
  if (s != VNRT_OK) return s;

  path = path_join(ck->dir, INDEX_FILE);
  if (!path) return vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  uint64_t total_size = 0;
  s = parse_index(ck, path, &total_size, err, err_size);
  free(path);
  if (s != VNRT_OK) return s;

  /* Each shard once; it must hold exactly the tensors the map assigns to it. */
  for (int32_t i = 0; i < ck->n_shards; i++) {
    ck_shard *sh = &ck->shards[i];
    path = path_join(ck->dir, sh->file);
    if (!path) return vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
    s = vnrt_safetensors_open(ck->ctx, path, &sh->st);
    free(path);
    if (s != VNRT_OK)
      return vn_model_fail(err, err_size, VNRT_ERROR_IO, "shard %s named by %s: %s", sh->file,
                           INDEX_FILE, io_message(ck->ctx));
  }
  uint64_t sum = 0;
  for (int32_t i = 0; i < ck->n_entries; i++) {
    const ck_entry *e = &ck->entries[i];
    const ck_shard *sh = &ck->shards[e->shard];
    size_t bytes = 0;
    if (vnrt_safetensors_find_stored(sh->st, e->name, NULL, NULL, NULL, NULL, &bytes) != VNRT_OK)
      return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                           "%s/%s: %s maps tensor '%s' to this shard, which does not hold it",
                           ck->dir, sh->file, INDEX_FILE, e->name);
    sum += bytes;
  }
  for (int32_t i = 0; i < ck->n_shards; i++) {
    const ck_shard *sh = &ck->shards[i];
    if (vnrt_safetensors_count(sh->st) == sh->mapped) continue;
    for (int32_t j = 0; j < vnrt_safetensors_count(sh->st); j++) {
      const char *name = vnrt_safetensors_name(sh->st, j);
      const ck_entry *e = find_entry(ck, name);
      if (!e || e->shard != i)
        return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                             "%s/%s: holds tensor '%s', which %s %s%s", ck->dir, sh->file, name,
                             INDEX_FILE, e ? "maps to shard " : "does not list",
                             e ? ck->shards[e->shard].file : "");
    }
  }
  if (sum != total_size)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "%s/%s: metadata.total_size is %llu, but the tensors it maps hold %llu "
                         "bytes",
                         ck->dir, INDEX_FILE, (unsigned long long)total_size,
                         (unsigned long long)sum);

  /* The config's inventory: present, dtype, shape. */
  check_ctx c = {.ck = ck, .err = err, .err_size = err_size, .status = VNRT_OK};
  vn_v4_for_each_tensor(&ck->cfg, VN_V4_LIST_MODEL, check_tensor, &c);
  if (c.status != VNRT_OK) return c.status;
  if (c.missing)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "%s: tensor '%s' is missing (config.json needs it; %d tensor%s missing "
                         "in all)",
                         ck->dir, c.first_missing, (int)c.missing, c.missing == 1 ? "" : "s");
  for (int32_t i = 0; i < ck->n_entries; i++) {
    const ck_entry *e = &ck->entries[i];
    if (e->listed) continue;
    if (strncmp(e->name, "mtp.", 4) == 0) {
      size_t bytes = 0;
      vnrt_safetensors_find_stored(ck->shards[e->shard].st, e->name, NULL, NULL, NULL, NULL,
                                   &bytes);
      ck->bytes_by_kind[VN_V4_KIND_MTP] += bytes;
      continue;
    }
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "%s/%s: tensor '%s' is not part of the model config.json describes",
                         ck->dir, ck->shards[e->shard].file, e->name);
  }
  return VNRT_OK;
}

vnrt_status vn_checkpoint_open(vnrt_context *ctx, const char *dir, vn_checkpoint **out, char *err,
                               size_t err_size) {
  if (err && err_size) err[0] = '\0';
  if (out) *out = NULL;
  if (!ctx || !dir || !out)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "vn_checkpoint_open: ctx, dir and out are required");
  vn_checkpoint *ck = calloc(1, sizeof *ck);
  if (!ck) return vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  ck->ctx = ctx;
  ck->dir = str_dup(dir);
  vnrt_status s = ck->dir ? open_checked(ck, err, err_size)
                          : vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "out of memory");
  if (s != VNRT_OK) {
    vn_checkpoint_close(ck);
    return s;
  }
  *out = ck;
  return VNRT_OK;
}

void vn_checkpoint_close(vn_checkpoint *ck) {
  if (!ck) return;
  for (int32_t i = 0; i < ck->n_shards; i++) {
    vnrt_safetensors_close(ck->shards[i].st);
    free(ck->shards[i].file);
  }
  for (int32_t i = 0; i < ck->n_entries; i++) free(ck->entries[i].name);
  free(ck->shards);
  free(ck->entries);
  free(ck->dir);
  free(ck);
}

const vn_v4_config *vn_checkpoint_config(const vn_checkpoint *ck) { return ck ? &ck->cfg : NULL; }

/* The stored view of a tensor, with a message naming it when it is absent. */
static vnrt_status find_stored(vn_checkpoint *ck, const char *name, const char **dtype,
                               int64_t *dims, const void **data, size_t *bytes, char *err,
                               size_t err_size) {
  const ck_entry *e = find_entry(ck, name);
  if (!e)
    return vn_model_fail(err, err_size, VNRT_ERROR_NOT_FOUND, "%s: no tensor named '%s'", ck->dir,
                         name);
  if (vnrt_safetensors_find_stored(ck->shards[e->shard].st, name, dtype, NULL, dims, data, bytes) !=
      VNRT_OK)
    return vn_model_fail(err, err_size, VNRT_ERROR_NOT_FOUND, "%s/%s: %s", ck->dir,
                         ck->shards[e->shard].file, io_message(ck->ctx));
  return VNRT_OK;
}

vnrt_status vn_checkpoint_tensor(vn_checkpoint *ck, const char *name, vnrt_tensor_type *type,
                                 const void **data, size_t *bytes, char *err, size_t err_size) {
  if (type) memset(type, 0, sizeof *type);
  if (data) *data = NULL;
  if (bytes) *bytes = 0;
  if (!ck || !name)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "vn_checkpoint_tensor: ck and name are required");
  const ck_entry *e = find_entry(ck, name);
  if (!e)
    return vn_model_fail(err, err_size, VNRT_ERROR_NOT_FOUND, "%s: no tensor named '%s'", ck->dir,
                         name);
  vnrt_tensor_type t;
  vnrt_status s = vnrt_safetensors_find(ck->shards[e->shard].st, name, &t, data, bytes);
  if (s != VNRT_OK)
    return vn_model_fail(err, err_size, s, "%s/%s: %s%s", ck->dir, ck->shards[e->shard].file,
                         io_message(ck->ctx),
                         s == VNRT_ERROR_UNSUPPORTED ? " (tid2eid: vn_checkpoint_tid2eid)" : "");
  if (type) *type = t;
  return VNRT_OK;
}

vnrt_status vn_checkpoint_layer_tensor(vn_checkpoint *ck, int32_t layer, const char *suffix,
                                       vnrt_tensor_type *type, const void **data, size_t *bytes,
                                       char *err, size_t err_size) {
  char name[256];
  if (!suffix ||
      snprintf(name, sizeof name, "layers.%d.%s", (int)layer, suffix) >= (int)sizeof name)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "vn_checkpoint_layer_tensor: bad suffix");
  return vn_checkpoint_tensor(ck, name, type, data, bytes, err, err_size);
}

static int64_t load_i64le(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return (int64_t)v;
}

vnrt_status vn_checkpoint_tid2eid(vn_checkpoint *ck, int32_t layer, int32_t **out, char *err,
                                  size_t err_size) {
  if (out) *out = NULL;
  if (!ck || !out)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "vn_checkpoint_tid2eid: ck and out are required");
  const vn_v4_config *c = &ck->cfg;
  if (!vn_v4_is_hash_layer(c, layer))
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "layer %d is not a hash-routed layer (num_hash_layers is %d)", (int)layer,
                         c->num_hash_layers);
  char name[64];
  snprintf(name, sizeof name, "layers.%d.ffn.gate.tid2eid", (int)layer);
  const void *data = NULL;
  size_t bytes = 0;
  VN_MODEL_RETURN_IF_ERROR(find_stored(ck, name, NULL, NULL, &data, &bytes, err, err_size));
  const size_t V = (size_t)c->vocab_size, k = (size_t)c->num_experts_per_tok;
  if (bytes != V * k * 8) /* checked at open; kept for safety */
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT, "%s: wrong size", name);
  int32_t *ids = malloc(V * k * sizeof *ids);
  int64_t *seen = calloc((size_t)c->n_routed_experts, sizeof *seen); /* row + 1 that used it */
  if (!ids || !seen) {
    free(ids);
    free(seen);
    return vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY, "%s: out of memory", name);
  }
  const uint8_t *p = data;
  for (size_t r = 0; r < V; r++)
    for (size_t j = 0; j < k; j++) {
      int64_t v = load_i64le(p + (r * k + j) * 8);
      const char *bad = NULL;
      if (v < 0 || v >= c->n_routed_experts)
        bad = "outside [0, n_routed_experts)";
      else if (seen[v] == (int64_t)r + 1)
        bad = "repeated in its row (a token's experts must be distinct)";
      if (bad) {
        free(ids);
        free(seen);
        return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                             "%s: layer %d, row %zu (token id), column %zu: expert id %lld is %s "
                             "(n_routed_experts is %d)",
                             name, (int)layer, r, j, (long long)v, bad, c->n_routed_experts);
      }
      seen[v] = (int64_t)r + 1;
      ids[r * k + j] = (int32_t)v;
    }
  free(seen);
  *out = ids;
  return VNRT_OK;
}

void vn_v4_experts_free(vn_v4_experts *e) {
  if (!e) return;
  free(e->gate_up);
  free(e->gate_up_scale);
  free(e->down);
  free(e->down_scale);
  memset(e, 0, sizeof *e);
}

/* Copies expert e's tensor "<w>.<what>" of layer to dst (exactly want bytes). */
static vnrt_status copy_part(vn_checkpoint *ck, int32_t layer, int32_t e, const char *w,
                             const char *what, uint8_t *dst, size_t want, char *err,
                             size_t err_size) {
  char name[128];
  snprintf(name, sizeof name, "layers.%d.ffn.experts.%d.%s.%s", (int)layer, (int)e, w, what);
  const void *data = NULL;
  size_t bytes = 0;
  VN_MODEL_RETURN_IF_ERROR(find_stored(ck, name, NULL, NULL, &data, &bytes, err, err_size));
  if (bytes != want)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT, "%s: %zu bytes, expected %zu",
                         name, bytes, want);
  memcpy(dst, data, want);
  return VNRT_OK;
}

vnrt_status vn_checkpoint_pack_experts(vn_checkpoint *ck, int32_t layer, vn_v4_experts *out,
                                       char *err, size_t err_size) {
  if (out) memset(out, 0, sizeof *out);
  if (!ck || !out)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "vn_checkpoint_pack_experts: ck and out are required");
  const vn_v4_config *c = &ck->cfg;
  if (layer < 0 || layer >= c->num_hidden_layers)
    return vn_model_fail(err, err_size, VNRT_ERROR_INVALID_ARGUMENT,
                         "vn_checkpoint_pack_experts: layer %d is outside [0, %d)", (int)layer,
                         c->num_hidden_layers);
  const int64_t E = c->n_routed_experts, F = c->moe_intermediate_size, C = c->hidden_size;
  const bool fp4 = c->expert_dtype == VN_V4_EXPERT_FP4, q = c->quantized;
  const vnrt_dtype codes = !q ? VNRT_BF16 : fp4 ? VNRT_E2M1 : VNRT_E4M3;
  const int64_t b0 = fp4 ? 1 : 128, b1 = fp4 ? 32 : 128;
  out->block[0] = q ? (int32_t)b0 : 0;
  out->block[1] = q ? (int32_t)b1 : 0;
  out->gate_up_type = (vnrt_tensor_type){codes, 3, {E, 2 * F, C}};
  out->down_type = (vnrt_tensor_type){codes, 3, {E, C, F}};
  out->gate_up_bytes = vnrt_tensor_type_bytes(&out->gate_up_type);
  out->down_bytes = vnrt_tensor_type_bytes(&out->down_type);
  out->gate_up = malloc(out->gate_up_bytes);
  out->down = malloc(out->down_bytes);
  if (q) { /* a dequantized checkpoint's BF16 experts have no scales */
    out->gate_up_scale_type = (vnrt_tensor_type){VNRT_E8M0, 3, {E, 2 * F / b0, C / b1}};
    out->down_scale_type = (vnrt_tensor_type){VNRT_E8M0, 3, {E, C / b0, F / b1}};
    out->gate_up_scale_bytes = vnrt_tensor_type_bytes(&out->gate_up_scale_type);
    out->down_scale_bytes = vnrt_tensor_type_bytes(&out->down_scale_type);
    out->gate_up_scale = malloc(out->gate_up_scale_bytes);
    out->down_scale = malloc(out->down_scale_bytes);
  }
  if (!out->gate_up || !out->down || (q && (!out->gate_up_scale || !out->down_scale))) {
    vn_v4_experts_free(out);
    return vn_model_fail(err, err_size, VNRT_ERROR_OUT_OF_MEMORY,
                         "layer %d: out of memory packing the experts", (int)layer);
  }
  /* Per expert: w1 then w3 fill gate_up's 2F rows; their scales likewise (F is a multiple of
   * 128, so the 128-row scale blocks of w1 and w3 do not straddle). */
  const size_t gu = out->gate_up_bytes / (size_t)E, gus = out->gate_up_scale_bytes / (size_t)E;
  const size_t dn = out->down_bytes / (size_t)E, dns = out->down_scale_bytes / (size_t)E;
  vnrt_status s = VNRT_OK;
  for (int32_t e = 0; e < E && s == VNRT_OK; e++) {
    uint8_t *g = (uint8_t *)out->gate_up + (size_t)e * gu;
    uint8_t *gs = q ? (uint8_t *)out->gate_up_scale + (size_t)e * gus : NULL;
    s = copy_part(ck, layer, e, "w1", "weight", g, gu / 2, err, err_size);
    if (s == VNRT_OK)
      s = copy_part(ck, layer, e, "w3", "weight", g + gu / 2, gu / 2, err, err_size);
    if (s == VNRT_OK && q) s = copy_part(ck, layer, e, "w1", "scale", gs, gus / 2, err, err_size);
    if (s == VNRT_OK && q)
      s = copy_part(ck, layer, e, "w3", "scale", gs + gus / 2, gus / 2, err, err_size);
    if (s == VNRT_OK)
      s = copy_part(ck, layer, e, "w2", "weight", (uint8_t *)out->down + (size_t)e * dn, dn, err,
                    err_size);
    if (s == VNRT_OK && q)
      s = copy_part(ck, layer, e, "w2", "scale", (uint8_t *)out->down_scale + (size_t)e * dns, dns,
                    err, err_size);
  }
  if (s != VNRT_OK) vn_v4_experts_free(out);
  return s;
}

void vn_checkpoint_bytes_by_kind(const vn_checkpoint *ck, uint64_t out[VN_V4_KIND_COUNT]) {
  for (int k = 0; k < VN_V4_KIND_COUNT; k++) out[k] = ck ? ck->bytes_by_kind[k] : 0;
}
