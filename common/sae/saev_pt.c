/*
 * saev_pt.c: the sae.pt reader of saev_pt.h: the JSON header line, a zip reader for
 * stored entries (with zip64 fields), a pickle machine for the opcodes a torch.save'd
 * state dict uses, and the mapping of saev's header to SaeConfig.
 *
 * What a torch.save'd state dict pickles (protocol 2; torch 1.13 and 2.x alike):
 *   GLOBAL collections.OrderedDict, EMPTY_TUPLE, REDUCE          -> the dict
 *   MARK (BINUNICODE name, GLOBAL torch._utils._rebuild_tensor_v2,
 *         MARK (BINPERSID ('storage', GLOBAL torch.FloatStorage, key, 'cpu', numel)),
 *               offset, size tuple, stride tuple, requires_grad, OrderedDict() hooks
 *         TUPLE, REDUCE)* SETITEMS
 *   EMPTY_DICT {'_metadata': OrderedDict(...)} BUILD STOP           -> ignored state
 * plus BINPUT/BINGET memo traffic. Any other callable, opcode or storage type is refused
 * with the file's name and what was found: a sae.pt is data, never code to run.
 * Tensors are gathered through their strides (saev's W_enc is W_dec.T.clone(), stored
 * column-major). The host is little-endian, as torch's `byteorder` record is checked.
 */
#include "saev_pt.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "checkpoint.h"
#include "fsutil.h"

#define MAX_HEADER_BYTES (1 << 20) /* saev's header is a few hundred bytes */
#define PT_MAX_DIMS 8

/* ---- the file ------------------------------------------------------------------------ */

typedef struct {
    const char *path;
    const unsigned char *map; // [size] the whole file
    size_t size;
    size_t zip_base;          // where the zip archive starts (after the header line)
    char *err;
    size_t errlen;
} PtFile;

static int fail(PtFile *f, const char *fmt, ...) SAEV_PRINTF(2, 3);
static int fail(PtFile *f, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return saev_errf(f->err, f->errlen, "%s: %s", f->path, msg);
}

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* ---- zip (stored entries only, as torch writes them) ------------------------------- */

typedef struct {
    char *name;                // entry name
    const unsigned char *data; // [size] inside the map
    uint64_t size;
} ZipEntry;

typedef struct {
    ZipEntry *e; // [n]
    int n;
} Zip;

static void zip_free(Zip *z) {
    for (int i = 0; i < z->n; i++) free(z->e[i].name);
    free(z->e);
    z->e = NULL;
    z->n = 0;
}

static int zip_read(PtFile *f, Zip *z) {
    const unsigned char *b = f->map + f->zip_base;
    size_t n = f->size - f->zip_base;
    memset(z, 0, sizeof *z);
    if (n < 22) return fail(f, "the zip archive after the header line is truncated (%zu bytes)", n);
    /* End of central directory: the last signature within 22 + 65535 bytes of the end. */
    size_t eocd = 0;
    int found = 0;
    for (size_t p = n - 22 + 1; p-- > 0 && n - p <= 22 + 65535;)
        if (rd32(b + p) == 0x06054b50) { eocd = p; found = 1; break; }
    if (!found) return fail(f, "no zip end-of-central-directory record: the torch.save part is truncated or not a zip");
    uint64_t n_entries = rd16(b + eocd + 10), cd_size = rd32(b + eocd + 12), cd_off = rd32(b + eocd + 16);
    if (n_entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        if (eocd < 20 || rd32(b + eocd - 20) != 0x07064b50) return fail(f, "zip64 fields without a zip64 locator");
        uint64_t e64 = rd64(b + eocd - 20 + 8);
        if (e64 + 56 > n || rd32(b + e64) != 0x06064b50) return fail(f, "zip64 end-of-central-directory record missing");
        n_entries = rd64(b + e64 + 32);
        cd_size = rd64(b + e64 + 40);
        cd_off = rd64(b + e64 + 48);
    }
    if (cd_off > n || cd_size > n - cd_off) return fail(f, "zip central directory (offset %llu, %llu bytes) lies outside the file", (unsigned long long)cd_off, (unsigned long long)cd_size);
    if (n_entries > 1000000) return fail(f, "zip claims %llu entries", (unsigned long long)n_entries);
    z->e = callocCheck(n_entries ? n_entries : 1, sizeof *z->e);
    size_t p = cd_off;
    for (uint64_t i = 0; i < n_entries; i++) {
        if (p + 46 > cd_off + cd_size || rd32(b + p) != 0x02014b50) return fail(f, "zip central directory entry %llu is malformed", (unsigned long long)i);
        unsigned method = rd16(b + p + 10), name_len = rd16(b + p + 28), extra_len = rd16(b + p + 30), comment_len = rd16(b + p + 32);
        uint64_t csize = rd32(b + p + 20), usize = rd32(b + p + 24), local = rd32(b + p + 42);
        if (p + 46 + name_len + extra_len + comment_len > cd_off + cd_size) return fail(f, "zip central directory entry %llu runs past the directory", (unsigned long long)i);
        char *name = mallocCheck(name_len + 1u);
        memcpy(name, b + p + 46, name_len);
        name[name_len] = 0;
        z->e[z->n++].name = name;
        /* zip64 extra field: the 64-bit values of the fields set to 0xFFFFFFFF, in order. */
        for (size_t x = p + 46 + name_len; x + 4 <= p + 46 + name_len + extra_len;) {
            unsigned id = rd16(b + x), len = rd16(b + x + 2);
            const unsigned char *v = b + x + 4, *extra_end = b + p + 46 + name_len + extra_len;
            const unsigned char *v_end = v + len < extra_end ? v + len : extra_end;
            if (id == 0x0001) {
                if (usize == 0xFFFFFFFFu && v + 8 <= v_end) { usize = rd64(v); v += 8; }
                if (csize == 0xFFFFFFFFu && v + 8 <= v_end) { csize = rd64(v); v += 8; }
                if (local == 0xFFFFFFFFu && v + 8 <= v_end) { local = rd64(v); v += 8; }
            }
            x += 4 + len;
        }
        if (method != 0 || csize != usize)
            return fail(f, "zip entry %s is compressed (method %u); torch.save stores entries uncompressed", name, method);
        if (local + 30 > n || rd32(b + local) != 0x04034b50) return fail(f, "zip entry %s: no local header at offset %llu", name, (unsigned long long)local);
        uint64_t data = local + 30 + rd16(b + local + 26) + rd16(b + local + 28);
        if (data > n || usize > n - data) return fail(f, "zip entry %s (%llu bytes) runs past the end of the file", name, (unsigned long long)usize);
        z->e[z->n - 1].data = b + data;
        z->e[z->n - 1].size = usize;
        p += 46 + name_len + extra_len + comment_len;
    }
    return 0;
}

static const ZipEntry *zip_find(const Zip *z, const char *prefix, const char *rest) {
    size_t lp = strlen(prefix);
    for (int i = 0; i < z->n; i++)
        if (!strncmp(z->e[i].name, prefix, lp) && !strcmp(z->e[i].name + lp, rest)) return &z->e[i];
    return NULL;
}

/* ---- pickle -------------------------------------------------------------------------- */

typedef enum { V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE, V_TENSOR } VKind;

typedef struct {
    VKind kind;
    int64_t i;       // V_BOOL, V_INT; V_STORAGE: numel
    double f;        // V_FLOAT
    char *s;         // V_STR text; V_GLOBAL "module.name"; V_STORAGE key; V_TENSOR storage key
    char *dtype;     // V_STORAGE, V_TENSOR: storage class name ("FloatStorage")
    int n;           // V_TUPLE/V_LIST: items; V_DICT: pairs; V_TENSOR: ndim
    int *items;      // [n] (tuple, list), [2n] key, value (dict)
    int64_t offset;  // V_TENSOR: storage offset in elements
    int64_t shape[PT_MAX_DIMS];
    int64_t stride[PT_MAX_DIMS];
} Val;

typedef struct {
    PtFile *f;
    Val *vals;       // [n_vals] every value made; indices stand for them
    int n_vals, cap_vals;
    int *stack;      // [sp] value indices; MARK_SLOT marks
    int sp, cap_stack;
    int *memo;       // [cap_memo] value index per memo slot, -1 unset
    int cap_memo;
} Pickle;

#define MARK_SLOT (-1)

static int new_val(Pickle *m, VKind kind) {
    if (m->n_vals == m->cap_vals) {
        m->cap_vals = m->cap_vals ? 2 * m->cap_vals : 256;
        m->vals = reallocCheck(m->vals, sizeof(Val) * (size_t)m->cap_vals);
    }
    memset(&m->vals[m->n_vals], 0, sizeof(Val));
    m->vals[m->n_vals].kind = kind;
    return m->n_vals++;
}

static void push(Pickle *m, int v) {
    if (m->sp == m->cap_stack) {
        m->cap_stack = m->cap_stack ? 2 * m->cap_stack : 64;
        m->stack = reallocCheck(m->stack, sizeof(int) * (size_t)m->cap_stack);
    }
    m->stack[m->sp++] = v;
}

static void pickle_free(Pickle *m) {
    for (int i = 0; i < m->n_vals; i++) {
        free(m->vals[i].s);
        free(m->vals[i].dtype);
        free(m->vals[i].items);
    }
    free(m->vals);
    free(m->stack);
    free(m->memo);
}

/* The values above the topmost MARK, popped with it: their count, or -1. */
static int pop_to_mark(Pickle *m, int **items) {
    int k = m->sp;
    while (k > 0 && m->stack[k - 1] != MARK_SLOT) k--;
    if (k == 0) return -1;
    int n = m->sp - k;
    *items = mallocCheck(sizeof(int) * (size_t)(n ? n : 1));
    memcpy(*items, m->stack + k, sizeof(int) * (size_t)n);
    m->sp = k - 1;
    return n;
}

static int make_tuple(Pickle *m, int *items, int n) {
    int t = new_val(m, V_TUPLE);
    m->vals[t].items = items;
    m->vals[t].n = n;
    return t;
}

static void dict_add(Pickle *m, int d, const int *kv, int n_pairs) {
    Val *v = &m->vals[d];
    v->items = reallocCheck(v->items, sizeof(int) * (size_t)(2 * (v->n + n_pairs) + 1));
    memcpy(v->items + 2 * v->n, kv, sizeof(int) * (size_t)(2 * n_pairs));
    v->n += n_pairs;
}

static int is_global(const Val *v, const char *name) { return v->kind == V_GLOBAL && !strcmp(v->s, name); }

/* torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static int rebuild_tensor(Pickle *m, int args_index) {
    PtFile *f = m->f;
    const Val *args = &m->vals[args_index];
    if (args->kind != V_TUPLE || args->n < 6) return fail(f, "data.pkl: _rebuild_tensor_v2 with %d arguments (6 or 7 expected)", args->n);
    const Val *st = &m->vals[args->items[0]], *off = &m->vals[args->items[1]], *size = &m->vals[args->items[2]], *stride = &m->vals[args->items[3]];
    if (st->kind != V_STORAGE || off->kind != V_INT || size->kind != V_TUPLE || stride->kind != V_TUPLE || size->n != stride->n || size->n > PT_MAX_DIMS)
        return fail(f, "data.pkl: _rebuild_tensor_v2 arguments are not (storage, offset, size, stride, ...)");
    if (st->i < 0 || st->i > ((int64_t)1 << 40)) return fail(f, "data.pkl: a storage of %lld elements", (long long)st->i);
    if (off->i < 0 || off->i > ((int64_t)1 << 40)) return fail(f, "data.pkl: a tensor at storage offset %lld", (long long)off->i);
    int i_st = args->items[0], i_off = args->items[1], i_size = args->items[2], i_stride = args->items[3];
    int t = new_val(m, V_TENSOR); /* may move m->vals: every pointer is taken again below */
    Val *v = &m->vals[t];
    st = &m->vals[i_st];
    off = &m->vals[i_off];
    size = &m->vals[i_size];
    stride = &m->vals[i_stride];
    v->s = strdupCheck(st->s);
    v->dtype = strdupCheck(st->dtype);
    v->i = st->i;
    v->offset = off->i;
    v->n = size->n;
    for (int k = 0; k < v->n; k++) {
        const Val *a = &m->vals[size->items[k]], *b = &m->vals[stride->items[k]];
        if (a->kind != V_INT || b->kind != V_INT || a->i < 0 || b->i < 0 || a->i > ((int64_t)1 << 40) || b->i > ((int64_t)1 << 40))
            return fail(f, "data.pkl: a tensor's size or stride is not an integer in [0, 2^40]");
        v->shape[k] = a->i;
        v->stride[k] = b->i;
    }
    return t;
}

/* Runs data.pkl; returns the index of the top-level value, or -1 (message in f->err). */
static int pickle_run(Pickle *m, const unsigned char *p, size_t n) {
    PtFile *f = m->f;
    size_t i = 0;
#define NEED(k)                                                                        \
    do {                                                                               \
        if (i + (k) > n) return fail(f, "data.pkl is truncated at byte %zu", i);       \
    } while (0)
#define POP(var)                                                                       \
    do {                                                                               \
        if (m->sp == 0 || m->stack[m->sp - 1] == MARK_SLOT)                            \
            return fail(f, "data.pkl: opcode 0x%02x at byte %zu finds no value on the stack", op, at); \
        (var) = m->stack[--m->sp];                                                     \
    } while (0)
    while (1) {
        NEED(1);
        size_t at = i;
        unsigned op = p[i++];
        switch (op) {
        case 0x80: /* PROTO */
            NEED(1);
            if (p[i] != 2) return fail(f, "data.pkl uses pickle protocol %u; torch.save writes protocol 2", p[i]);
            i++;
            break;
        case '.': { /* STOP */
            int v;
            POP(v);
            return v;
        }
        case '(': push(m, MARK_SLOT); break;
        case 'N': push(m, new_val(m, V_NONE)); break;
        case 0x88: case 0x89: { int v = new_val(m, V_BOOL); m->vals[v].i = op == 0x88; push(m, v); break; }
        case 'K': { NEED(1); int v = new_val(m, V_INT); m->vals[v].i = p[i]; i += 1; push(m, v); break; }
        case 'M': { NEED(2); int v = new_val(m, V_INT); m->vals[v].i = rd16(p + i); i += 2; push(m, v); break; }
        case 'J': { NEED(4); int v = new_val(m, V_INT); m->vals[v].i = (int32_t)rd32(p + i); i += 4; push(m, v); break; }
        case 0x8a: { /* LONG1: little-endian two's complement of up to 8 bytes */
            NEED(1);
            unsigned len = p[i++];
            if (len > 8) return fail(f, "data.pkl: an integer of %u bytes", len);
            NEED(len);
            uint64_t u = 0;
            for (unsigned k = 0; k < len; k++) u |= (uint64_t)p[i + k] << (8 * k);
            if (len > 0 && len < 8 && (p[i + len - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * len);
            int v = new_val(m, V_INT);
            m->vals[v].i = (int64_t)u;
            i += len;
            push(m, v);
            break;
        }
        case 'G': { /* BINFLOAT: big-endian double */
            NEED(8);
            uint64_t u = 0;
            for (int k = 0; k < 8; k++) u = u << 8 | p[i + k];
            int v = new_val(m, V_FLOAT);
            memcpy(&m->vals[v].f, &u, 8);
            i += 8;
            push(m, v);
            break;
        }
        case 'X': { /* BINUNICODE */
            NEED(4);
            uint32_t len = rd32(p + i);
            i += 4;
            NEED(len);
            int v = new_val(m, V_STR);
            m->vals[v].s = mallocCheck((size_t)len + 1);
            memcpy(m->vals[v].s, p + i, len);
            m->vals[v].s[len] = 0;
            i += len;
            push(m, v);
            break;
        }
        case 'c': { /* GLOBAL module\nname\n */
            const unsigned char *nl1 = memchr(p + i, '\n', n - i);
            const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', n - (size_t)(nl1 + 1 - p)) : NULL;
            if (!nl2) return fail(f, "data.pkl: GLOBAL at byte %zu is truncated", at);
            int v = new_val(m, V_GLOBAL);
            size_t l1 = (size_t)(nl1 - (p + i)), l2 = (size_t)(nl2 - nl1 - 1);
            char *s = mallocCheck(l1 + l2 + 2);
            memcpy(s, p + i, l1);
            s[l1] = '.';
            memcpy(s + l1 + 1, nl1 + 1, l2);
            s[l1 + 1 + l2] = 0;
            m->vals[v].s = s;
            i = (size_t)(nl2 + 1 - p);
            int storage = !strncmp(s, "torch.", 6) && strlen(s) > 13 && !strcmp(s + strlen(s) - 7, "Storage") && !strchr(s + 6, '.');
            if (!storage && strcmp(s, "collections.OrderedDict") && strcmp(s, "torch._utils._rebuild_tensor_v2"))
                return fail(f, "data.pkl refers to %s; a plain state dict (an OrderedDict of tensors) holds only collections.OrderedDict, "
                               "torch._utils._rebuild_tensor_v2 and torch.*Storage", s);
            push(m, v);
            break;
        }
        case ')': push(m, make_tuple(m, mallocCheck(sizeof(int)), 0)); break;
        case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
            int k = (int)(op - 0x84);
            if (m->sp < k) return fail(f, "data.pkl: TUPLE%d at byte %zu with %d values", k, at, m->sp);
            int *items = mallocCheck(sizeof(int) * 3);
            for (int q = k - 1; q >= 0; q--) POP(items[q]);
            push(m, make_tuple(m, items, k));
            break;
        }
        case 't': {
            int *items;
            int k = pop_to_mark(m, &items);
            if (k < 0) return fail(f, "data.pkl: TUPLE at byte %zu without MARK", at);
            push(m, make_tuple(m, items, k));
            break;
        }
        case ']': push(m, new_val(m, V_LIST)); break;
        case '}': push(m, new_val(m, V_DICT)); break;
        case 'a': case 'e': { /* APPEND, APPENDS */
            int *items, k, one;
            if (op == 'a') { POP(one); items = mallocCheck(sizeof(int)); items[0] = one; k = 1; }
            else if ((k = pop_to_mark(m, &items)) < 0) return fail(f, "data.pkl: APPENDS at byte %zu without MARK", at);
            if (m->sp == 0 || m->stack[m->sp - 1] == MARK_SLOT || m->vals[m->stack[m->sp - 1]].kind != V_LIST)
                return fail(f, "data.pkl: APPEND at byte %zu to something not a list", at);
            Val *l = &m->vals[m->stack[m->sp - 1]];
            l->items = reallocCheck(l->items, sizeof(int) * (size_t)(l->n + k + 1));
            memcpy(l->items + l->n, items, sizeof(int) * (size_t)k);
            l->n += k;
            free(items);
            break;
        }
        case 's': case 'u': { /* SETITEM, SETITEMS */
            int *items, k;
            if (op == 's') {
                items = mallocCheck(sizeof(int) * 2);
                POP(items[1]);
                POP(items[0]);
                k = 2;
            } else if ((k = pop_to_mark(m, &items)) < 0 || k % 2) {
                return fail(f, "data.pkl: SETITEMS at byte %zu without MARK or with an odd count", at);
            }
            if (m->sp == 0 || m->stack[m->sp - 1] == MARK_SLOT || m->vals[m->stack[m->sp - 1]].kind != V_DICT)
                return fail(f, "data.pkl: SETITEM at byte %zu on something not a dict", at);
            dict_add(m, m->stack[m->sp - 1], items, k / 2);
            free(items);
            break;
        }
        case 'q': case 'r': { /* BINPUT, LONG_BINPUT */
            uint32_t slot;
            if (op == 'q') { NEED(1); slot = p[i]; i += 1; } else { NEED(4); slot = rd32(p + i); i += 4; }
            if (m->sp == 0 || m->stack[m->sp - 1] == MARK_SLOT) return fail(f, "data.pkl: PUT at byte %zu with an empty stack", at);
            if (slot > 10000000) return fail(f, "data.pkl: memo slot %u", slot);
            if ((int)slot >= m->cap_memo) {
                int cap = (int)slot + 256;
                m->memo = reallocCheck(m->memo, sizeof(int) * (size_t)cap);
                for (int q = m->cap_memo; q < cap; q++) m->memo[q] = -1;
                m->cap_memo = cap;
            }
            m->memo[slot] = m->stack[m->sp - 1];
            break;
        }
        case 'h': case 'j': { /* BINGET, LONG_BINGET */
            uint32_t slot;
            if (op == 'h') { NEED(1); slot = p[i]; i += 1; } else { NEED(4); slot = rd32(p + i); i += 4; }
            if ((int)slot >= m->cap_memo || m->memo[slot] < 0) return fail(f, "data.pkl: GET of unset memo slot %u at byte %zu", slot, at);
            push(m, m->memo[slot]);
            break;
        }
        case 'Q': { /* BINPERSID: ('storage', torch.XStorage, key, location, numel) */
            int pid;
            POP(pid);
            const Val *t = &m->vals[pid];
            if (t->kind != V_TUPLE || t->n != 5 || m->vals[t->items[0]].kind != V_STR || strcmp(m->vals[t->items[0]].s, "storage") ||
                m->vals[t->items[1]].kind != V_GLOBAL || m->vals[t->items[2]].kind != V_STR || m->vals[t->items[4]].kind != V_INT)
                return fail(f, "data.pkl: persistent id at byte %zu is not torch's ('storage', type, key, location, numel)", at);
            int v = new_val(m, V_STORAGE);
            t = &m->vals[pid];
            m->vals[v].s = strdupCheck(m->vals[t->items[2]].s);
            m->vals[v].dtype = strdupCheck(m->vals[t->items[1]].s + 6);
            m->vals[v].i = m->vals[t->items[4]].i;
            push(m, v);
            break;
        }
        case 'R': { /* REDUCE */
            int fn, args;
            POP(args);
            POP(fn);
            const Val *F = &m->vals[fn], *A = &m->vals[args];
            if (is_global(F, "collections.OrderedDict") && A->kind == V_TUPLE && A->n == 0) push(m, new_val(m, V_DICT));
            else if (is_global(F, "torch._utils._rebuild_tensor_v2")) {
                int t = rebuild_tensor(m, args);
                if (t < 0) return -1;
                push(m, t);
            } else return fail(f, "data.pkl calls %s at byte %zu, which a plain state dict does not", F->kind == V_GLOBAL ? F->s : "a non-global", at);
            break;
        }
        case 'b': { /* BUILD: the state dict's `_metadata` attribute, which holds no weights */
            int state;
            POP(state);
            (void)state;
            if (m->sp == 0 || m->stack[m->sp - 1] == MARK_SLOT || m->vals[m->stack[m->sp - 1]].kind != V_DICT)
                return fail(f, "data.pkl: BUILD at byte %zu on something not an OrderedDict", at);
            break;
        }
        default:
            return fail(f, "data.pkl: pickle opcode 0x%02x at byte %zu is not one a torch.save'd state dict uses", op, at);
        }
    }
#undef NEED
#undef POP
}

/* ---- tensors ------------------------------------------------------------------------- */

/* The float32 tensor `name` of the state dict, gathered into a fresh C-order array of
 * the expected shape (ndim entries of want). NULL when absent; -1 in *bad on error. */
static float *gather_tensor(Pickle *m, const Zip *z, const char *prefix, const Val *t, const char *name, int ndim, const int64_t *want, int *bad) {
    PtFile *f = m->f;
    if (ndim > 2) { *bad = fail(f, "tensor %s: only 0-, 1- and 2-d tensors are read", name); return NULL; }
    char shape_txt[128] = "", want_txt[128] = "";
    for (int k = 0; k < t->n; k++) snprintf(shape_txt + strlen(shape_txt), sizeof shape_txt - strlen(shape_txt), "%s%lld", k ? ", " : "", (long long)t->shape[k]);
    for (int k = 0; k < ndim; k++) snprintf(want_txt + strlen(want_txt), sizeof want_txt - strlen(want_txt), "%s%lld", k ? ", " : "", (long long)want[k]);
    int same = t->n == ndim;
    for (int k = 0; same && k < ndim; k++) same = t->shape[k] == want[k];
    if (!same) { *bad = fail(f, "tensor %s has shape [%s]; the header's config wants [%s]", name, shape_txt, want_txt); return NULL; }
    if (strcmp(t->dtype, "FloatStorage")) { *bad = fail(f, "tensor %s is stored as torch.%s; only float32 (FloatStorage) is read", name, t->dtype); return NULL; }
    char rest[300];
    snprintf(rest, sizeof rest, "data/%s", t->s);
    const ZipEntry *e = zip_find(z, prefix, rest);
    if (!e) { *bad = fail(f, "tensor %s: its storage %s%s is not in the archive", name, prefix, rest); return NULL; }
    if (e->size != (uint64_t)t->i * 4) { *bad = fail(f, "tensor %s: storage %s%s has %llu bytes for %lld float32", name, prefix, rest, (unsigned long long)e->size, (long long)t->i); return NULL; }
    int64_t numel = 1, last = t->offset;
    for (int k = 0; k < ndim; k++) {
        numel *= want[k];
        if (want[k] > 0) last += (want[k] - 1) * t->stride[k];
    }
    if (numel > 0 && (t->offset < 0 || last >= t->i)) { *bad = fail(f, "tensor %s reaches element %lld of a storage of %lld", name, (long long)last, (long long)t->i); return NULL; }
    float *out = mallocCheck(sizeof(float) * (size_t)(numel ? numel : 1));
    const unsigned char *src = e->data;
    if (ndim == 0) memcpy(out, src + 4 * t->offset, 4);
    else if (ndim == 1) for (int64_t a = 0; a < want[0]; a++) memcpy(out + a, src + 4 * (t->offset + a * t->stride[0]), 4);
    else
        for (int64_t a = 0; a < want[0]; a++)
            for (int64_t b = 0; b < want[1]; b++) memcpy(out + a * want[1] + b, src + 4 * (t->offset + a * t->stride[0] + b * t->stride[1]), 4);
    return out;
}

static float *gather(Pickle *m, const Zip *z, const char *prefix, int dict, const char *name, int ndim, const int64_t *want, int *bad) {
    const Val *d = &m->vals[dict];
    const Val *t = NULL;
    for (int k = 0; k < d->n; k++)
        if (!strcmp(m->vals[d->items[2 * k]].s, name)) t = &m->vals[d->items[2 * k + 1]];
    return t ? gather_tensor(m, z, prefix, t, name, ndim, want, bad) : NULL;
}

/* ---- header -------------------------------------------------------------------------- */

static const cJSON *item(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static int get_int(PtFile *f, const cJSON *o, const char *key, int *out) {
    const cJSON *v = item(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble || v->valuedouble < 1)
        return fail(f, "header field \"%s\" is missing or not a positive integer", key);
    *out = (int)v->valuedouble;
    return 0;
}

static void get_bool(const cJSON *o, const char *key, int *out) {
    const cJSON *v = item(o, key);
    if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
}

/* cfg.activation of saev's schema >= 1: {"cls": Relu|TopK|BatchTopK, "params": {...}}
 * (schema 1A put the class name in the header's "cls" and top_k in cfg instead). */
static int read_activation(PtFile *f, const cJSON *hdr, const cJSON *cfg, SaeConfig *c) {
    const cJSON *act = item(cfg, "activation");
    const char *cls = cJSON_GetStringValue(item(act, "cls"));
    const cJSON *params = item(act, "params");
    if (!act) {
        cls = cJSON_GetStringValue(item(hdr, "cls"));
        params = cfg;
        if (!cls || !strcmp(cls, "SparseAutoencoderConfig")) cls = "Relu";
    }
    if (!cls) return fail(f, "header field cfg.activation has no \"cls\" (Relu, TopK or BatchTopK)");
    if (!strcmp(cls, "Relu")) c->activation = SAE_RELU;
    else if (!strcmp(cls, "TopK")) c->activation = SAE_TOPK;
    else if (!strcmp(cls, "BatchTopK")) c->activation = SAE_BATCH_TOPK;
    else return fail(f, "activation class \"%s\" is not one saev-c knows (Relu, TopK, BatchTopK)", cls);
    const cJSON *v;
    if (c->activation != SAE_RELU) {
        if (get_int(f, params, "top_k", &c->k)) return -1;
        if (c->k > c->d_sae) c->k = c->d_sae; /* saev: k = min(top_k, d_sae) */
    }
    if (cJSON_IsNumber(v = item(params, "momentum"))) c->momentum = (float)v->valuedouble;
    const cJSON *sp = item(params, "sparsity");
    const cJSON *spp = item(sp, "params") ? item(sp, "params") : sp; /* legacy: {"coeff": x} */
    c->l1_coeff = cJSON_IsNumber(v = item(spp, "coeff")) ? (float)v->valuedouble : 0.0f;
    const cJSON *aux = item(params, "aux");
    const char *aux_cls = cJSON_GetStringValue(item(aux, "cls"));
    if (aux_cls && !strcmp(aux_cls, "AuxK")) {
        const cJSON *ap = item(aux, "params");
        if (cJSON_IsNumber(v = item(ap, "k_aux"))) c->k_aux = (int)v->valuedouble;
        if (cJSON_IsNumber(v = item(ap, "alpha"))) c->aux_alpha = (float)v->valuedouble;
    } else {
        c->k_aux = 0;
    }
    return 0;
}

static int read_header(PtFile *f, const char *text, SaevPt *out) {
    cJSON *h = cJSON_Parse(text);
    if (!cJSON_IsObject(h)) {
        cJSON_Delete(h);
        return fail(f, "the first line is not a JSON object (saev's sae.pt starts with its config as one JSON line)");
    }
    SaeConfig *c = &out->cfg;
    int d = 0, S = 0, rc = 0;
    const cJSON *schema = item(h, "schema");
    if (!schema) {
        /* Preprint: vars(config.SparseAutoencoder); ReLU + L1 on x - b_dec. */
        out->era = "preprint";
        out->schema = 0;
        if (get_int(f, h, "d_vit", &d)) { rc = -1; goto done; }
        const cJSON *ef = item(h, "exp_factor");
        if (item(h, "d_sae")) { if (get_int(f, h, "d_sae", &S)) { rc = -1; goto done; } }
        else if (cJSON_IsNumber(ef) && ef->valuedouble >= 1 && ef->valuedouble == (double)(int)ef->valuedouble) S = d * (int)ef->valuedouble;
        else { rc = fail(f, "preprint header has neither d_sae nor an integer exp_factor"); goto done; }
        sae_config_default(c, d, S);
        c->activation = SAE_RELU;
        c->k_aux = 0;
        const cJSON *v = item(h, "sparsity_coeff");
        if (!cJSON_IsNumber(v)) v = item(h, "l1_coeff");
        if (cJSON_IsNumber(v)) c->l1_coeff = (float)v->valuedouble;
        get_bool(h, "normalize_w_dec", &c->normalize_w_dec);
        get_bool(h, "remove_parallel_grads", &c->remove_parallel_grads);
        c->center_input = 1;
    } else {
        if (!cJSON_IsNumber(schema) || schema->valuedouble < 1 || schema->valuedouble > 5 || schema->valuedouble != (int)schema->valuedouble) {
            char *s = cJSON_PrintUnformatted(schema);
            rc = fail(f, "header schema %s is not one saev has written (1 to 5)", s ? s : "?");
            free(s);
            goto done;
        }
        out->era = "current";
        out->schema = (int)schema->valuedouble;
        const cJSON *cfg = item(h, "cfg");
        if (!cJSON_IsObject(cfg)) { rc = fail(f, "header has no \"cfg\" object"); goto done; }
        /* Schemas 1..4 may still say d_vit/exp_factor. */
        if (item(cfg, "d_model")) rc = get_int(f, cfg, "d_model", &d);
        else rc = get_int(f, cfg, "d_vit", &d);
        if (rc) goto done;
        if (item(cfg, "d_sae")) rc = get_int(f, cfg, "d_sae", &S);
        else {
            int ef = 0;
            rc = get_int(f, cfg, "exp_factor", &ef);
            S = d * ef;
        }
        if (rc) goto done;
        sae_config_default(c, d, S);
        if ((rc = read_activation(f, h, cfg, c))) goto done;
        get_bool(cfg, "normalize_w_dec", &c->normalize_w_dec);
        get_bool(cfg, "remove_parallel_grads", &c->remove_parallel_grads);
        c->center_input = 0;
    }
    const char *bad = sae_config_check(c);
    if (bad) rc = fail(f, "header config: %s", bad);
done:
    cJSON_Delete(h);
    return rc;
}

/* ---- public -------------------------------------------------------------------------- */

int saev_pt_detect(const char *path) {
    unsigned char b[4] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    size_t n = fread(b, 1, sizeof b, fp);
    fclose(fp);
    if (n < 4) return 0;
    if (b[0] == '{' && (b[1] == '"' || b[1] == ' ' || b[1] == '\n' || b[1] == '}')) return 1;
    return !memcmp(b, "PK\x03\x04", 4) || (b[0] == 0x80 && b[1] == 0x02);
}

void saev_pt_free(SaevPt *p) {
    free(p->w_enc);
    free(p->b_enc);
    free(p->w_dec);
    free(p->b_dec);
    free(p->header);
    memset(p, 0, sizeof *p);
}

/* The zip archive at f->zip_base and its data.pkl run: the top value's index, or -1.
 * prefix gets the archive's folder ("archive/"). */
static int archive_pickle(PtFile *f, Zip *z, Pickle *m, char *prefix, size_t prefix_len) {
    if (zip_read(f, z)) return -1;
    const ZipEntry *pkl = NULL;
    for (int i = 0; i < z->n; i++) {
        const char *slash = strchr(z->e[i].name, '/');
        if (slash && !strcmp(slash, "/data.pkl")) pkl = &z->e[i];
    }
    if (!pkl) return fail(f, "the torch.save archive has no <archive>/data.pkl");
    size_t lp = (size_t)(strchr(pkl->name, '/') - pkl->name) + 1;
    if (lp >= prefix_len) return fail(f, "archive name too long");
    memcpy(prefix, pkl->name, lp);
    prefix[lp] = 0;
    const ZipEntry *bo = zip_find(z, prefix, "byteorder");
    if (bo && !(bo->size == 6 && !memcmp(bo->data, "little", 6))) return fail(f, "tensors are stored big-endian (%sbyteorder); only little-endian is read", prefix);
    return pickle_run(m, pkl->data, pkl->size);
}

/* The whole file mapped read-only into f (map, size); 0 or -1 with the message. */
static int map_file(PtFile *f) {
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return saev_errf(f->err, f->errlen, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || sb.st_size == 0) {
        close(fd);
        return saev_errf(f->err, f->errlen, "%s: empty or unreadable file", f->path);
    }
    f->size = (size_t)sb.st_size;
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return saev_errf(f->err, f->errlen, "%s: cannot map: %s", f->path, strerror(errno));
    f->map = map;
    return 0;
}

float *torch_tensor_read(const char *path, int64_t *numel, char *err, size_t errlen) {
    PtFile f = {.path = path, .err = err, .errlen = errlen};
    if (map_file(&f)) return NULL;
    Zip z = {0};
    Pickle m = {.f = &f};
    char prefix[256];
    float *out = NULL;
    int top = -1, bad = 0;
    if (f.size > 0 && f.map[0] == '{') fail(&f, "a saev sae.pt (JSON header line), not a torch.save'd tensor");
    else if (f.size < 4 || memcmp(f.map, "PK\x03\x04", 4)) fail(&f, "not a torch.save zip archive");
    else top = archive_pickle(&f, &z, &m, prefix, sizeof prefix);
    if (top >= 0 && m.vals[top].kind != V_TENSOR) fail(&f, "data.pkl does not hold a single tensor (torch.save(tensor))");
    else if (top >= 0) {
        const Val *t = &m.vals[top];
        *numel = 1;
        for (int k = 0; k < t->n; k++) *numel *= t->shape[k];
        out = gather_tensor(&m, &z, prefix, t, "(the tensor)", t->n, t->shape, &bad);
    }
    pickle_free(&m);
    zip_free(&z);
    munmap((void *)f.map, f.size);
    return out;
}

int saev_pt_read(const char *path, SaevPt *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    PtFile f = {.path = path, .err = err, .errlen = errlen};
    if (map_file(&f)) return -1;
    void *map = (void *)f.map;
    int rc = -1, dict = -1;
    Zip z = {0};
    Pickle m = {.f = &f};
    if (f.size >= 4 && !memcmp(f.map, "PK\x03\x04", 4)) { fail(&f, "a torch.save archive without saev's JSON header line: not a saev sae.pt (saev's dump writes the config line first)"); goto out; }
    if (f.size >= 2 && f.map[0] == 0x80 && f.map[1] == 0x02) { fail(&f, "torch's legacy (pre-1.6, non-zip) format without saev's header line: not a saev sae.pt"); goto out; }
    const unsigned char *nl = memchr(f.map, '\n', f.size < MAX_HEADER_BYTES ? f.size : MAX_HEADER_BYTES);
    if (f.map[0] != '{' || !nl) { fail(&f, "does not start with a JSON header line: not a saev sae.pt"); goto out; }
    out->header = mallocCheck((size_t)(nl - f.map) + 1);
    memcpy(out->header, f.map, (size_t)(nl - f.map));
    out->header[nl - f.map] = 0;
    if (read_header(&f, out->header, out)) goto out;
    f.zip_base = (size_t)(nl + 1 - f.map);
    if (f.size - f.zip_base < 4 || memcmp(f.map + f.zip_base, "PK\x03\x04", 4)) { fail(&f, "no zip archive (torch.save's format) after the header line"); goto out; }
    char prefix[256];
    if ((dict = archive_pickle(&f, &z, &m, prefix, sizeof prefix)) < 0) goto out;
    const Val *dv = &m.vals[dict];
    if (dv->kind != V_DICT) { fail(&f, "data.pkl does not hold a dict (a state dict)"); goto out; }
    for (int k = 0; k < dv->n; k++) {
        const Val *key = &m.vals[dv->items[2 * k]], *val = &m.vals[dv->items[2 * k + 1]];
        if (key->kind != V_STR || val->kind != V_TENSOR) { fail(&f, "data.pkl: state dict entry %d is not a name -> tensor pair", k); goto out; }
        if (strcmp(key->s, "W_enc") && strcmp(key->s, "b_enc") && strcmp(key->s, "W_dec") && strcmp(key->s, "b_dec") &&
            strcmp(key->s, "activation.threshold")) {
            fail(&f, "state dict entry \"%s\" is not one of saev's SAE (W_enc, b_enc, W_dec, b_dec, activation.threshold)", key->s);
            goto out;
        }
    }
    int64_t d = out->cfg.d_model, S = out->cfg.d_sae, sh_enc[2] = {d, S}, sh_dec[2] = {S, d}, sh_s[1] = {S}, sh_d[1] = {d};
    int bad = 0;
    const char *names[4] = {"W_enc", "b_enc", "W_dec", "b_dec"};
    float **dst[4] = {&out->w_enc, &out->b_enc, &out->w_dec, &out->b_dec};
    const int64_t *shapes[4] = {sh_enc, sh_s, sh_dec, sh_d};
    int ndims[4] = {2, 1, 2, 1};
    for (int t = 0; t < 4; t++) {
        *dst[t] = gather(&m, &z, prefix, dict, names[t], ndims[t], shapes[t], &bad);
        if (bad) goto out;
        if (!*dst[t]) { fail(&f, "state dict has no %s", names[t]); goto out; }
    }
    float *th = gather(&m, &z, prefix, dict, "activation.threshold", 0, NULL, &bad);
    if (bad) goto out;
    if (th && out->cfg.activation != SAE_BATCH_TOPK) { free(th); fail(&f, "state dict has activation.threshold but the header's activation is not BatchTopK"); goto out; }
    if (!th && out->cfg.activation == SAE_BATCH_TOPK) { fail(&f, "BatchTopK SAE without activation.threshold in its state dict"); goto out; }
    /* saev's eval: x > threshold when threshold > 0, else x > 0 -- the same as threshold 0. */
    if (th) out->threshold = th[0] > 0 ? th[0] : 0.0f;
    free(th);
    rc = 0;
out:
    pickle_free(&m);
    zip_free(&z);
    munmap(map, f.size);
    if (rc) saev_pt_free(out);
    return rc;
}

void saev_pt_describe(const SaevPt *p, const char *path, FILE *out) {
    static const char *acts[] = {"relu", "top-k", "batch-top-k"};
    fprintf(out, "%s: saev %s format (schema %d): %s, d_model %d, %d latents", path, p->era, p->schema, acts[p->cfg.activation],
            p->cfg.d_model, p->cfg.d_sae);
    if (p->cfg.activation != SAE_RELU) fprintf(out, ", k %d", p->cfg.k);
    if (p->cfg.activation == SAE_BATCH_TOPK) fprintf(out, ", threshold %g", p->threshold);
    fprintf(out, ", encoder input %s\n  header: %s\n", p->cfg.center_input ? "x - b_dec" : "x", p->header);
}

/* A new Sae holding pt's config and weights. */
static void sae_from_pt(Sae *sae, const SaevPt *pt, int max_batch) {
    sae_create(sae, &pt->cfg, max_batch);
    size_t d = (size_t)pt->cfg.d_model, S = (size_t)pt->cfg.d_sae;
    memcpy(sae->p.w_enc, pt->w_enc, sizeof(float) * d * S);
    memcpy(sae->p.b_enc, pt->b_enc, sizeof(float) * S);
    memcpy(sae->p.w_dec, pt->w_dec, sizeof(float) * S * d);
    memcpy(sae->p.b_dec, pt->b_dec, sizeof(float) * d);
    sae->threshold = pt->threshold;
}

int saev_pt_read_sae(Sae *sae, const char *path, int max_batch, char *err, size_t errlen) {
    SaevPt pt;
    if (saev_pt_read(path, &pt, err, errlen)) return -1;
    sae_from_pt(sae, &pt, max_batch);
    saev_pt_free(&pt);
    return 0;
}

void saev_pt_load(Sae *sae, const char *path, int max_batch) {
    char err[1024];
    if (saev_pt_read_sae(sae, path, max_batch, err, sizeof err)) saev_usage_fail("%s", err);
}

void saev_pt_import(const char *path, const char *out_path, float data_scale, const float *act_mean) {
    SaevPt pt;
    char err[1024];
    if (saev_pt_read(path, &pt, err, sizeof err)) saev_usage_fail("%s", err);
    Sae sae;
    sae_from_pt(&sae, &pt, 1);
    sae.data_scale = data_scale;
    if (act_mean) {
        /* The SAE saw s(x - mean); saev-c feeds it s·x. With m = s·mean, shifting b_dec by
         * m keeps the reconstruction (in the scaled space) and, when the encoder is centred,
         * its input; an uncentred encoder takes m·W_enc out of b_enc instead. */
        int d = pt.cfg.d_model, S = pt.cfg.d_sae;
        double *m = mallocCheck(sizeof(double) * (size_t)d);
        for (int i = 0; i < d; i++) m[i] = (double)data_scale * act_mean[i];
        if (!pt.cfg.center_input)
            for (int j = 0; j < S; j++) {
                double acc = 0;
                for (int i = 0; i < d; i++) acc += m[i] * sae.p.w_enc[(size_t)i * S + j];
                sae.p.b_enc[j] = (float)((double)sae.p.b_enc[j] - acc);
            }
        for (int i = 0; i < d; i++) sae.p.b_dec[i] = (float)((double)sae.p.b_dec[i] + m[i]);
        free(m);
    }
    const char *slash = strrchr(out_path, '/');
    if (slash && slash != out_path) { /* the output's folder, once the input has been read */
        char *dir = strdupCheck(out_path);
        dir[slash - out_path] = 0;
        make_dirs_or_die(dir);
        free(dir);
    }
    /* saev's header line, verbatim, and which era it was read as: provenance. */
    const char *keys[2] = {"saev_header", "saev_era"}, *values[2] = {pt.header, pt.era};
    sae_checkpoint_write_meta(&sae, out_path, 0, keys, values, 2);
    sae_destroy(&sae);
    saev_pt_free(&pt);
}
