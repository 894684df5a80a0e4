/*
 * config.c: the YAML configuration mechanism of config.h.
 *
 * libyaml's event parser builds a small tree of CfgNode (scalar, list, mapping), each
 * node remembering its source (file name, or "--set k=v" / "default of k") and the
 * 1-based line and column of its value and, inside a mapping, of its key. Everything
 * after parsing works on that tree: `--set` grafts a parsed value into it, sweep
 * expansion clones it once per grid point, and cfg_bind walks it beside a CfgSchema.
 * Nodes that do not come from a file position (--set values, defaults, maps created
 * on the way) have line 0 and are described by their source name alone.
 *
 * Rules of binding: a null value (empty, ~, null) counts as absent, so `--set k=null`
 * unsets an optional key; quoted scalars are strings and never numbers or booleans;
 * string keys accept any unquoted scalar as its text.
 */
#include "fsutil.h"
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "check.h"

typedef enum { NODE_SCALAR, NODE_LIST, NODE_MAP } NodeKind;

struct CfgNode {
    NodeKind kind;
    char *file;            // source name: the file, "--set k=v" or "default of k" (owned)
    int line, col;         // 1-based position of the value; 0 when not from a file position
    char *text;            // NODE_SCALAR: the scalar's text
    int quoted;            // NODE_SCALAR: quoted or tagged !!str, so always a string
    char *key;             // the key when this node is a mapping's value, else NULL
    int key_line, key_col; // position of that key
    CfgNode **kids;        // [n] list elements or mapping values, in document order
    int n, cap;
};

struct CfgDoc {
    CfgNode *root; // always a NODE_MAP
};

// ---- nodes --------------------------------------------------------------------------

static CfgNode *node_new(NodeKind kind, const char *file, int line, int col) {
    CfgNode *n = callocCheck(1, sizeof *n);
    n->kind = kind;
    n->file = strdupCheck(file);
    n->line = line;
    n->col = col;
    return n;
}

static void node_free(CfgNode *n) {
    if (!n) return;
    for (int i = 0; i < n->n; i++) node_free(n->kids[i]);
    free(n->kids);
    free(n->file);
    free(n->text);
    free(n->key);
    free(n);
}

static CfgNode *node_clone(const CfgNode *n) {
    CfgNode *c = node_new(n->kind, n->file, n->line, n->col);
    c->text = n->text ? strdupCheck(n->text) : NULL;
    c->quoted = n->quoted;
    c->key = n->key ? strdupCheck(n->key) : NULL;
    c->key_line = n->key_line;
    c->key_col = n->key_col;
    for (int i = 0; i < n->n; i++) {
        if (c->n == c->cap) c->kids = reallocCheck(c->kids, (size_t)(c->cap = c->cap ? 2 * c->cap : 4) * sizeof *c->kids);
        c->kids[c->n++] = node_clone(n->kids[i]);
    }
    return c;
}

static void node_push(CfgNode *parent, CfgNode *kid) {
    if (parent->n == parent->cap)
        parent->kids = reallocCheck(parent->kids, (size_t)(parent->cap = parent->cap ? 2 * parent->cap : 4) * sizeof *parent->kids);
    parent->kids[parent->n++] = kid;
}

static void node_remove(CfgNode *parent, int i) {
    node_free(parent->kids[i]);
    memmove(parent->kids + i, parent->kids + i + 1, (size_t)(parent->n - i - 1) * sizeof *parent->kids);
    parent->n--;
}

static int node_find(const CfgNode *map, const char *key) {
    for (int i = 0; i < map->n; i++)
        if (!strcmp(map->kids[i]->key, key)) return i;
    return -1;
}

// Replaces map[key] by val (taking ownership) or appends it; keeps an existing key's position.
static void node_put(CfgNode *map, const char *key, CfgNode *val, int key_line, int key_col) {
    int i = node_find(map, key);
    if (i >= 0) {
        key_line = map->kids[i]->key_line;
        key_col = map->kids[i]->key_col;
        node_free(map->kids[i]);
        map->kids[i] = val;
    } else {
        node_push(map, val);
    }
    free(val->key);
    val->key = strdupCheck(key);
    val->key_line = key_line;
    val->key_col = key_col;
}

static void node_set_source(CfgNode *n, const char *file) {
    free(n->file);
    n->file = strdupCheck(file);
    n->line = n->col = n->key_line = n->key_col = 0;
    for (int i = 0; i < n->n; i++) node_set_source(n->kids[i], file);
}

static int is_null(const CfgNode *n) {
    if (!n || n->kind != NODE_SCALAR || n->quoted) return n == NULL;
    const char *t = n->text;
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

static void where_at(const char *file, int line, int col, char *buf, size_t len) {
    if (line > 0) snprintf(buf, len, "%s:%d:%d", file, line, col);
    else snprintf(buf, len, "%s", file);
}

const char *cfg_node_where(const CfgNode *node, char *buf, size_t buflen) {
    where_at(node->file, node->line, node->col, buf, buflen);
    return buf;
}

const CfgNode *cfg_node_child(const CfgNode *map, const char *key) {
    if (!map || map->kind != NODE_MAP) return NULL;
    int i = node_find(map, key);
    return i < 0 ? NULL : map->kids[i];
}

// Copies text into out[SHORT_TEXT], ending in "..." when it does not fit.
#define SHORT_TEXT 160
static void shorten(const char *text, char *out) {
    size_t n = strlen(text);
    if (n < SHORT_TEXT) {
        memcpy(out, text, n + 1);
    } else {
        memcpy(out, text, SHORT_TEXT - 4);
        memcpy(out + SHORT_TEXT - 4, "...", 4);
    }
}

const CfgNode *cfg_doc_find(const CfgDoc *doc, const char *dotted) {
    const CfgNode *n = doc->root;
    char key[256];
    for (const char *p = dotted; n && *p;) {
        size_t len = strcspn(p, ".");
        if (len >= sizeof key) return NULL;
        memcpy(key, p, len);
        key[len] = 0;
        n = cfg_node_child(n, key);
        p += len + (p[len] == '.');
    }
    return n;
}

// Fills err with "where: path: message" and returns -1.
SAEV_PRINTF(6, 7)
static int fail_at(CfgError *err, const char *file, int line, int col, const char *path, const char *fmt, ...) {
    char where[400], msg[560];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    where_at(file, line, col, where, sizeof where);
    /* A source or key path can be very long (a --set of a huge value, deep nesting):
     * shorten both so the problem itself always fits in the message. */
    char short_where[SHORT_TEXT], short_path[SHORT_TEXT];
    shorten(where, short_where);
    shorten(path ? path : "", short_path);
    if (path && *path) snprintf(err->msg, sizeof err->msg, "%s: %s: %s", short_where, short_path, msg);
    else snprintf(err->msg, sizeof err->msg, "%s: %s", short_where, msg);
    err->line = line;
    err->col = col;
    return -1;
}
#define fail_node(err, node, path, ...) fail_at((err), (node)->file, (node)->line, (node)->col, (path), __VA_ARGS__)
#define fail_key(err, node, path, ...) fail_at((err), (node)->file, (node)->key_line, (node)->key_col, (path), __VA_ARGS__)

// ---- parsing ------------------------------------------------------------------------

// Limits that keep a hostile or broken config (an alias bomb, a runaway generator) to
// bounded time and memory; real configs are a few hundred values, a few levels deep.
#define CFG_MAX_NODES 100000          // values in one document, aliases expanded
#define CFG_MAX_DEPTH 64              // nesting of mappings and lists
#define CFG_MAX_SCALAR (1u << 20)     // bytes in one value
#define CFG_MAX_FILE (16u << 20)      // bytes in a config file
#define CFG_MAX_SWEEP_NODES 10000000  // values over all the configs a sweep expands to

static long node_count(const CfgNode *n) {
    long c = 1;
    for (int i = 0; i < n->n; i++) c += node_count(n->kids[i]);
    return c;
}

typedef struct {
    yaml_parser_t parser;
    const char *name;
    CfgError *err;
    char **anchor_names; // [n_anchors]
    CfgNode **anchors;   // [n_anchors] nodes inside the tree being built
    int n_anchors;
    long n_nodes;        // values built so far, aliases counted expanded (<= CFG_MAX_NODES)
} YamlReader;

static int syntax_error(YamlReader *L) {
    yaml_parser_t *p = &L->parser;
    if (p->error == YAML_READER_ERROR)
        return fail_at(L->err, L->name, 0, 0, NULL, "not valid UTF-8 text: %s at byte %zu", p->problem, p->problem_offset);
    if (p->error == YAML_MEMORY_ERROR) saev_fail("out of memory parsing %s", L->name);
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->context)
        return fail_at(L->err, L->name, line, col, NULL, "YAML syntax error: %s %s (line %d, column %d)", p->problem ? p->problem : "",
                       p->context, (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    return fail_at(L->err, L->name, line, col, NULL, "YAML syntax error: %s", p->problem ? p->problem : "unknown problem");
}

static int next_event(YamlReader *L, yaml_event_t *ev) { return yaml_parser_parse(&L->parser, ev) ? 0 : syntax_error(L); }

static void remember_anchor(YamlReader *L, const yaml_char_t *anchor, CfgNode *n) {
    if (!anchor) return;
    L->anchor_names = reallocCheck(L->anchor_names, (size_t)(L->n_anchors + 1) * sizeof *L->anchor_names);
    L->anchors = reallocCheck(L->anchors, (size_t)(L->n_anchors + 1) * sizeof *L->anchors);
    L->anchor_names[L->n_anchors] = strdupCheck((const char *)anchor);
    L->anchors[L->n_anchors++] = n;
}

// Builds the node at `path` that starts with *ev (a scalar, alias or collection start),
// `depth` levels down. NULL on error.
static CfgNode *load_node(YamlReader *L, yaml_event_t *ev, const char *path, int depth) {
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    CfgNode *n = NULL;
    if (depth > CFG_MAX_DEPTH) {
        fail_at(L->err, L->name, line, col, path, "nested more than %d levels deep", CFG_MAX_DEPTH);
        return NULL;
    }
    if (++L->n_nodes > CFG_MAX_NODES) {
        fail_at(L->err, L->name, line, col, path, "more than %d values in one config", CFG_MAX_NODES);
        return NULL;
    }
    if (ev->type == YAML_ALIAS_EVENT) {
        for (int i = L->n_anchors - 1; i >= 0; i--)
            if (!strcmp(L->anchor_names[i], (const char *)ev->data.alias.anchor)) {
                /* Each alias is a copy: count what it expands to before making it. */
                if ((L->n_nodes += node_count(L->anchors[i])) > CFG_MAX_NODES) {
                    fail_at(L->err, L->name, line, col, path, "alias *%s expands the config past %d values (an alias bomb?)",
                            ev->data.alias.anchor, CFG_MAX_NODES);
                    return NULL;
                }
                n = node_clone(L->anchors[i]);
                free(n->key);
                n->key = NULL;
                return n;
            }
        fail_at(L->err, L->name, line, col, NULL, "unknown alias *%s", ev->data.alias.anchor);
        return NULL;
    }
    if (ev->type == YAML_SCALAR_EVENT) {
        if (ev->data.scalar.length > CFG_MAX_SCALAR) {
            fail_at(L->err, L->name, line, col, path, "a value of %zu bytes, over the limit of %u", ev->data.scalar.length, CFG_MAX_SCALAR);
            return NULL;
        }
        n = node_new(NODE_SCALAR, L->name, line, col);
        n->text = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        if (!n->text) saev_fail("out of memory parsing %s", L->name);
        const char *tag = (const char *)ev->data.scalar.tag;
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || (tag && !strcmp(tag, YAML_STR_TAG));
        remember_anchor(L, ev->data.scalar.anchor, n);
        return n;
    }
    int is_map = ev->type == YAML_MAPPING_START_EVENT;
    n = node_new(is_map ? NODE_MAP : NODE_LIST, L->name, line, col);
    const yaml_char_t *anchor = is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    for (;;) {
        yaml_event_t e;
        if (next_event(L, &e)) goto fail;
        if (e.type == YAML_MAPPING_END_EVENT || e.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&e);
            break;
        }
        char *key = NULL, sub[512];
        int key_line = (int)e.start_mark.line + 1, key_col = (int)e.start_mark.column + 1;
        if (is_map) {
            if (e.type != YAML_SCALAR_EVENT) {
                yaml_event_delete(&e);
                fail_at(L->err, L->name, key_line, key_col, NULL, "a key must be a plain name, not a list or mapping");
                goto fail;
            }
            key = strndup((const char *)e.data.scalar.value, e.data.scalar.length);
            yaml_event_delete(&e);
            if (!key) saev_fail("out of memory parsing %s", L->name);
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
            int dup = node_find(n, key);
            if (dup >= 0) {
                fail_at(L->err, L->name, key_line, key_col, sub, "duplicate key (first given at line %d, column %d)",
                        n->kids[dup]->key_line, n->kids[dup]->key_col);
                free(key);
                goto fail;
            }
            if (next_event(L, &e)) { free(key); goto fail; }
        } else {
            snprintf(sub, sizeof sub, "%s[%d]", path, n->n);
        }
        CfgNode *kid = load_node(L, &e, sub, depth + 1);
        yaml_event_delete(&e);
        if (!kid) { free(key); goto fail; }
        kid->key = key;
        kid->key_line = key_line;
        kid->key_col = key_col;
        node_push(n, kid);
    }
    remember_anchor(L, anchor, n);
    return n;
fail:
    node_free(n);
    return NULL;
}

// Parses one YAML document of any shape into *root (NULL for an empty stream). 0 or -1.
static int parse_any(const char *text, size_t len, const char *name, CfgNode **root, CfgError *err) {
    YamlReader L = {.name = name, .err = err};
    *root = NULL;
    if (!yaml_parser_initialize(&L.parser)) saev_fail("out of memory creating a YAML parser");
    yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, len);
    yaml_event_t ev;
    int rc = -1, n_docs = 0;
    for (;;) {
        if (next_event(&L, &ev)) break;
        yaml_event_type_t type = ev.type;
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        if (type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            rc = 0;
            break;
        }
        if (type == YAML_DOCUMENT_START_EVENT && n_docs++) {
            yaml_event_delete(&ev);
            fail_at(err, name, line, col, NULL, "a config holds one YAML document; found a second one");
            break;
        }
        if (type == YAML_SCALAR_EVENT || type == YAML_ALIAS_EVENT || type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
            *root = load_node(&L, &ev, "", 1);
            if (!*root) { yaml_event_delete(&ev); break; }
        }
        yaml_event_delete(&ev);
    }
    for (int i = 0; i < L.n_anchors; i++) free(L.anchor_names[i]);
    free(L.anchor_names);
    free(L.anchors);
    yaml_parser_delete(&L.parser);
    if (rc) { node_free(*root); *root = NULL; }
    return rc;
}

CfgDoc *cfg_parse_string(const char *text, const char *name, CfgError *err) {
    CfgNode *root;
    memset(err, 0, sizeof *err);
    if (parse_any(text, strlen(text), name, &root, err)) return NULL;
    if (is_null(root)) {
        node_free(root);
        root = node_new(NODE_MAP, name, 1, 1);
    } else if (root->kind != NODE_MAP) {
        fail_node(err, root, NULL, "a config must be a mapping of keys to values, not a %s", root->kind == NODE_LIST ? "list" : "scalar");
        node_free(root);
        return NULL;
    }
    CfgDoc *doc = mallocCheck(sizeof *doc);
    doc->root = root;
    return doc;
}

CfgDoc *cfg_parse_file(const char *path, CfgError *err) {
    memset(err, 0, sizeof *err);
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size > (off_t)CFG_MAX_FILE) {
        snprintf(err->msg, sizeof err->msg, "%.900s:1:1: the config is over %u bytes; not a config file?", path, CFG_MAX_FILE);
        err->line = err->col = 1;
        return NULL;
    }
    size_t len;
    char why[sizeof err->msg - 32];
    char *text = read_file(path, &len, why, sizeof why);
    if (!text) {
        snprintf(err->msg, sizeof err->msg, "cannot read the config %s", why);
        return NULL;
    }
    text[len] = 0;
    if (strlen(text) != len) {
        free(text);
        snprintf(err->msg, sizeof err->msg, "%s: the config holds a NUL byte; is it a text file?", path);
        return NULL;
    }
    CfgDoc *doc = cfg_parse_string(text, path, err);
    free(text);
    return doc;
}

CfgDoc *cfg_clone(const CfgDoc *doc) {
    CfgDoc *c = mallocCheck(sizeof *c);
    c->root = node_clone(doc->root);
    return c;
}

void cfg_free(CfgDoc *doc) {
    if (!doc) return;
    node_free(doc->root);
    free(doc);
}

// ---- paths, --set and sweeps --------------------------------------------------------

static int valid_name(const char *s, size_t len) {
    if (!len) return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-') return 0;
    return 1;
}

static int valid_path(const char *path) {
    for (const char *s = path;;) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        if (!valid_name(s, len)) return 0;
        if (!dot) return 1;
        s = dot + 1;
    }
}

// Puts val (owned) at the dotted path below map, creating mappings on the way (and
// replacing null values by them). A "sweep" component takes the rest of the path as
// one key, since sweep keys are themselves dotted paths. `src` positions new nodes.
static int put_path(CfgNode *map, const char *path, CfgNode *val, const CfgNode *src, const char *what, CfgError *err) {
    char prefix[512] = "";
    for (const char *s = path;;) {
        const char *dot = strcmp(map->key ? map->key : "", "sweep") ? strchr(s, '.') : NULL;
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)len, s);
        snprintf(prefix + strlen(prefix), sizeof prefix - strlen(prefix), "%s%s", *prefix ? "." : "", name);
        if (!dot) {
            node_put(map, name, val, src->key_line, src->key_col);
            return 0;
        }
        int i = node_find(map, name);
        if (i < 0 || is_null(map->kids[i])) {
            CfgNode *sub = node_new(NODE_MAP, src->file, src->key_line, src->key_col);
            node_put(map, name, sub, src->key_line, src->key_col);
            i = node_find(map, name);
        } else if (map->kids[i]->kind != NODE_MAP) {
            char at[512];
            cfg_node_where(map->kids[i], at, sizeof at);
            fail_key(err, src, what, "%s is not a mapping (it is given at %s), so it cannot hold %s", prefix, at, path);
            node_free(val); // may be src itself, so only after the message
            return -1;
        }
        map = map->kids[i];
        s = dot + 1;
    }
}

int cfg_set(CfgDoc *doc, const char *assignment, CfgError *err) {
    memset(err, 0, sizeof *err);
    char source[512];
    snprintf(source, sizeof source, "--set %s", assignment);
    const char *eq = strchr(assignment, '=');
    char path[512];
    snprintf(path, sizeof path, "%.*s", eq ? (int)(eq - assignment) : 0, assignment);
    if (!eq || !valid_path(path))
        return fail_at(err, source, 0, 0, NULL, "malformed assignment; expected key.path=value with names of letters, digits, _ and -");
    CfgNode *val;
    CfgError perr;
    if (parse_any(eq + 1, strlen(eq + 1), source, &val, &perr)) {
        /* perr.msg is "<source, shortened>: problem"; say the source once. */
        char short_source[SHORT_TEXT];
        shorten(source, short_source);
        const char *problem = perr.msg;
        size_t sl = strlen(short_source);
        if (!strncmp(problem, short_source, sl) && problem[sl] == ':') problem += sl + 2;
        snprintf(err->msg, sizeof err->msg, "%s: %.800s", short_source, strstr(problem, "YAML") ? strstr(problem, "YAML") : problem);
        return -1;
    }
    if (!val) val = node_new(NODE_SCALAR, source, 0, 0), val->text = strdupCheck("");
    node_set_source(val, source);
    return put_path(doc->root, path, val, val, path, err);
}

typedef struct {
    char path[512];       // full dotted path from the root
    const CfgNode *key;   // the sweep entry (its key position, its list of values)
} SweepAxis;

// Collects the sweep axes below map (path = map's own dotted path) in document order.
static int collect_sweeps(const CfgNode *map, const char *path, SweepAxis **axes, int *n, CfgError *err) {
    for (int i = 0; i < map->n; i++) {
        const CfgNode *kid = map->kids[i];
        char sub[512];
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", kid->key);
        if (strcmp(kid->key, "sweep")) {
            if (kid->kind == NODE_MAP && collect_sweeps(kid, sub, axes, n, err)) return -1;
            continue;
        }
        if (kid->kind != NODE_MAP) return fail_node(err, kid, sub, "sweep must be a mapping of key paths to lists of values");
        for (int j = 0; j < kid->n; j++) {
            const CfgNode *ax = kid->kids[j];
            char full[512];
            snprintf(full, sizeof full, "%s%s%s", path, *path ? "." : "", ax->key);
            if (!valid_path(ax->key)) return fail_key(err, ax, sub, "\"%s\" is not a key path (names of letters, digits, _ and - joined by dots)", ax->key);
            if (ax->kind != NODE_LIST)
                return fail_node(err, ax, full, "sweep values must be a list, e.g. [1, 2]; got %s", ax->kind == NODE_MAP ? "a mapping" : "a scalar");
            if (ax->n == 0) return fail_node(err, ax, full, "sweep values must be a non-empty list");
            for (int k = 0; k < *n; k++)
                if (!strcmp((*axes)[k].path, full)) {
                    char at[512];
                    where_at((*axes)[k].key->file, (*axes)[k].key->key_line, (*axes)[k].key->key_col, at, sizeof at);
                    return fail_key(err, ax, full, "swept twice (also at %s)", at);
                }
            *axes = reallocCheck(*axes, (size_t)(*n + 1) * sizeof **axes);
            snprintf((*axes)[*n].path, sizeof (*axes)[*n].path, "%s", full);
            (*axes)[(*n)++].key = ax;
        }
    }
    return 0;
}

static void remove_sweeps(CfgNode *map) {
    for (int i = map->n - 1; i >= 0; i--) {
        if (!strcmp(map->kids[i]->key, "sweep")) node_remove(map, i);
        else if (map->kids[i]->kind == NODE_MAP) remove_sweeps(map->kids[i]);
    }
}

int cfg_sweep(const CfgDoc *doc, CfgDoc ***out, CfgError *err) {
    memset(err, 0, sizeof *err);
    *out = NULL;
    SweepAxis *axes = NULL;
    int n_axes = 0;
    if (collect_sweeps(doc->root, "", &axes, &n_axes, err)) { free(axes); return -1; }
    long total = 1, values = node_count(doc->root);
    for (int a = 0; a < n_axes; a++)
        if ((total *= axes[a].key->n) > 100000 || total * values > CFG_MAX_SWEEP_NODES) {
            int rc = fail_key(err, axes[a].key, axes[a].path, "the sweep grid exceeds %s", total > 100000 ? "100000 configs" : "10^7 values in all its configs");
            free(axes);
            return rc;
        }
    CfgDoc *base = cfg_clone(doc);
    remove_sweeps(base->root);
    CfgDoc **docs = callocCheck((size_t)total, sizeof *docs);
    for (long g = 0; g < total; g++) {
        docs[g] = cfg_clone(base);
        long rest = g;
        for (int a = n_axes - 1; a >= 0; a--) { // the last axis varies fastest
            const CfgNode *values = axes[a].key;
            CfgNode *v = node_clone(values->kids[rest % values->n]);
            rest /= values->n;
            if (put_path(docs[g]->root, axes[a].path, v, values, axes[a].path, err)) {
                for (long k = 0; k <= g; k++) cfg_free(docs[k]);
                free(docs);
                cfg_free(base);
                free(axes);
                return -1;
            }
        }
    }
    cfg_free(base);
    free(axes);
    *out = docs;
    return (int)total;
}

// ---- binding ------------------------------------------------------------------------

// Edits (insert, delete, substitute, swap two neighbours) turning a into b: typos.
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), rows[3][128];
    if (la >= 127 || lb >= 127) return 1000;
    for (size_t j = 0; j <= lb; j++) rows[0][j] = j; // row i lives in rows[i % 3]
    for (size_t i = 1; i <= la; i++) {
        size_t *two = rows[(i + 1) % 3], *up = rows[(i + 2) % 3], *cur = rows[i % 3];
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t best = up[j - 1] + (a[i - 1] != b[j - 1]);
            if (up[j] + 1 < best) best = up[j] + 1;
            if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && two[j - 2] + 1 < best) best = two[j - 2] + 1;
            cur[j] = best;
        }
    }
    return rows[la % 3][lb];
}

// The closest of names to word, when within a small edit distance.
static void suggest(const char *word, const char **names, int n, char *buf, size_t len) {
    size_t best = (size_t)-1, limit = strlen(word) >= 6 ? 2 : 1;
    *buf = 0;
    for (int i = 0; i < n; i++) {
        size_t d = edit_distance(word, names[i]);
        if (d <= limit && d < best && d < strlen(names[i])) {
            best = d;
            snprintf(buf, len, "%s", names[i]);
        }
    }
}

static char *join(char *buf, size_t len, const char *path, const char *key) {
    snprintf(buf, len, "%s%s%s", path, *path ? "." : "", key);
    return buf;
}

static const char *describe(const CfgNode *n, char *buf, size_t len) {
    if (n->kind == NODE_LIST) snprintf(buf, len, "a list");
    else if (n->kind == NODE_MAP) snprintf(buf, len, "a mapping");
    else snprintf(buf, len, "%s\"%.200s\"", n->quoted ? "the quoted string " : "", n->text);
    return buf;
}

static int parse_float(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    const char *t = s + (*s == '+' || *s == '-');
    if (!strcmp(t, ".inf") || !strcmp(t, ".Inf") || !strcmp(t, ".INF")) {
        *out = *s == '-' ? -INFINITY : INFINITY;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || isnan(v) || (errno == ERANGE && isinf(v))) return -1;
    *out = v;
    return 0;
}

// Decimal integers, and float notation with an integral value (1e6, 2.5e3).
static int parse_int(const char *s, int64_t *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*end && !errno) { *out = v; return 0; }
    double d;
    if (parse_float(s, &d) || d != floor(d) || fabs(d) > 9007199254740992.0) return -1;
    *out = (int64_t)d;
    return 0;
}

static int parse_bool(const char *s, int *out) {
    static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(s, yes[i])) { *out = 1; return 0; }
        if (!strcasecmp(s, no[i])) { *out = 0; return 0; }
    }
    return -1;
}

static int check_range(const CfgField *f, double v, const CfgNode *n, const char *path, CfgError *err) {
    if (f->min <= f->max && (v < f->min || v > f->max)) {
        char got[256];
        return fail_node(err, n, path, "%s is out of range [%.17g, %.17g]", describe(n, got, sizeof got), f->min, f->max);
    }
    return 0;
}

// One scalar of an INT/FLOAT/BOOL/STRING field or list element into dst.
static int bind_scalar(const CfgField *f, CfgType type, const CfgNode *n, void *dst, const char *path, CfgError *err) {
    char got[256];
    if (n->kind != NODE_SCALAR || (n->quoted && type != CFG_STRING)) {
        static const char *want[] = {"an integer", "a number", "true or false", "a string"};
        return fail_node(err, n, path, "expected %s, got %s", want[type], describe(n, got, sizeof got));
    }
    if (type == CFG_INT) {
        int64_t v;
        if (parse_int(n->text, &v)) return fail_node(err, n, path, "expected an integer, got %s", describe(n, got, sizeof got));
        *(int64_t *)dst = v;
        return check_range(f, (double)v, n, path, err);
    }
    if (type == CFG_FLOAT) {
        double v;
        if (parse_float(n->text, &v)) return fail_node(err, n, path, "expected a number, got %s", describe(n, got, sizeof got));
        *(double *)dst = v;
        return check_range(f, v, n, path, err);
    }
    if (type == CFG_BOOL) {
        if (parse_bool(n->text, (int *)dst)) return fail_node(err, n, path, "expected true or false, got %s", describe(n, got, sizeof got));
        return 0;
    }
    if (f->choices) {
        char copy[1024], *save;
        int ok = 0;
        snprintf(copy, sizeof copy, "%s", f->choices);
        for (char *c = strtok_r(copy, "|", &save); c && !ok; c = strtok_r(NULL, "|", &save)) ok = !strcmp(c, n->text);
        if (!ok) {
            snprintf(copy, sizeof copy, "%s", f->choices);
            for (char *c = copy; (c = strchr(c, '|'));) *c = '/';
            return fail_node(err, n, path, "expected one of %s; got %s", copy, describe(n, got, sizeof got));
        }
    }
    *(char **)dst = strdupCheck(n->text);
    return 0;
}

static int bind_section(const CfgSchema *s, const CfgNode *map, void *obj, const char *path, CfgError *err);

// Binds one field's value n (never null) into dst.
static int bind_value(const CfgField *f, const CfgNode *n, void *dst, const char *path, CfgError *err) {
    char got[256], elem_path[600];
    switch (f->type) {
    case CFG_INT: case CFG_FLOAT: case CFG_BOOL: case CFG_STRING:
        return bind_scalar(f, f->type, n, dst, path, err);
    case CFG_INT_LIST: case CFG_FLOAT_LIST: case CFG_STRING_LIST: {
        static const char *want[] = {"integers", "numbers", "strings"};
        if (n->kind != NODE_LIST) return fail_node(err, n, path, "expected a list of %s like [a, b], got %s", want[f->type - CFG_INT_LIST], describe(n, got, sizeof got));
        CfgList *l = dst;
        CfgType et = f->type == CFG_INT_LIST ? CFG_INT : f->type == CFG_FLOAT_LIST ? CFG_FLOAT : CFG_STRING;
        size_t esize = et == CFG_INT ? sizeof(int64_t) : et == CFG_FLOAT ? sizeof(double) : sizeof(char *);
        void *elems = callocCheck((size_t)n->n + 1, esize);
        if (et == CFG_INT) l->i = elems;
        else if (et == CFG_FLOAT) l->f = elems;
        else l->s = elems;
        for (int i = 0; i < n->n; i++) {
            snprintf(elem_path, sizeof elem_path, "%s[%d]", path, i);
            if (bind_scalar(f, et, n->kids[i], (char *)elems + (size_t)i * esize, elem_path, err)) return -1;
            l->n = i + 1;
        }
        return 0;
    }
    case CFG_SECTION:
        if (n->kind == NODE_SCALAR && !n->quoted && (is_null(n) || !strcasecmp(n->text, "none"))) {
            if (f->nullable) return 0; // zeroed: enabled = 0
            return fail_node(err, n, path, "this section cannot be none");
        }
        if (n->kind != NODE_MAP) return fail_node(err, n, path, "expected a mapping (section %s), got %s", f->section->name, describe(n, got, sizeof got));
        if (bind_section(f->section, n, dst, path, err)) return -1;
        if (f->nullable) {
            int has_enabled = 0;
            for (int i = 0; i < f->section->n_fields; i++) has_enabled |= !strcmp(f->section->fields[i].key, "enabled");
            if (!has_enabled) *(int *)dst = 1;
        }
        return 0;
    }
    return fail_node(err, n, path, "field has an unknown type %d", (int)f->type);
}

static void set_unset(const CfgField *f, void *dst) {
    if (f->type == CFG_INT) *(int64_t *)dst = CFG_UNSET_INT;
    else if (f->type == CFG_FLOAT) *(double *)dst = NAN;
}

static int bind_section(const CfgSchema *s, const CfgNode *map, void *obj, const char *path, CfgError *err) {
    char sub[512];
    for (int i = 0; i < map->n; i++) { // unknown keys first, in document order
        const CfgNode *kid = map->kids[i];
        int known = 0;
        for (int j = 0; j < s->n_fields && !known; j++) known = !strcmp(s->fields[j].key, kid->key);
        if (known) continue;
        join(sub, sizeof sub, path, kid->key);
        if (!strcmp(kid->key, "sweep"))
            return fail_key(err, kid, sub, "this command does not expand sweeps; run one config at a time (or use a command that sweeps)");
        const char *names[256];
        char hint[128], list[600] = "";
        int n_names = s->n_fields < 256 ? s->n_fields : 256;
        for (int j = 0; j < n_names; j++) {
            names[j] = s->fields[j].key;
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "", names[j]);
        }
        suggest(kid->key, names, n_names, hint, sizeof hint);
        if (*hint) return fail_key(err, kid, sub, "unknown key (did you mean %s?)", hint);
        return fail_key(err, kid, sub, "unknown key; %s%s takes: %s", *path ? "section " : "the top level", path, list);
    }
    for (int j = 0; j < s->n_fields; j++) {
        const CfgField *f = &s->fields[j];
        void *dst = (char *)obj + f->offset;
        const CfgNode *v = cfg_node_child(map, f->key);
        join(sub, sizeof sub, path, f->key);
        if (v && (!is_null(v) || (f->type == CFG_SECTION && f->nullable))) {
            if (bind_value(f, v, dst, sub, err)) return -1;
            continue;
        }
        if (f->type == CFG_SECTION && (!f->def || f->def == CFG_UNSET)) { // absent section: its own defaults
            CfgNode *empty = node_new(NODE_MAP, v ? v->file : map->file, v ? v->line : map->line, v ? v->col : map->col);
            int rc = bind_value(f, empty, dst, sub, err);
            node_free(empty);
            if (rc) return -1;
            continue;
        }
        if (!f->def) {
            if (*path) return fail_node(err, map, sub, "missing required key %s in section %s", f->key, path);
            return fail_node(err, map, sub, "missing required top-level key %s", f->key);
        }
        if (f->def == CFG_UNSET) {
            set_unset(f, dst);
            continue;
        }
        char source[600];
        snprintf(source, sizeof source, "default of %s", sub);
        CfgNode *d;
        if (parse_any(f->def, strlen(f->def), source, &d, err)) return -1;
        if (!d) d = node_new(NODE_SCALAR, source, 0, 0), d->text = strdupCheck("");
        node_set_source(d, source);
        int rc = is_null(d) ? (set_unset(f, dst), 0) : bind_value(f, d, dst, sub, err);
        node_free(d);
        if (rc) return -1;
    }
    if (s->validate) {
        char buf[768];
        const char *msg = s->validate(obj, map, buf, sizeof buf);
        if (msg) return fail_node(err, map, *path ? path : NULL, "%s", msg);
    }
    return 0;
}

int cfg_bind(const CfgDoc *doc, const CfgSchema *schema, void *obj, CfgError *err) {
    memset(err, 0, sizeof *err);
    memset(obj, 0, schema->size);
    if (bind_section(schema, doc->root, obj, "", err) == 0) return 0;
    cfg_free_obj(schema, obj);
    memset(obj, 0, schema->size);
    return -1;
}

void cfg_free_obj(const CfgSchema *schema, void *obj) {
    for (int j = 0; j < schema->n_fields; j++) {
        const CfgField *f = &schema->fields[j];
        void *p = (char *)obj + f->offset;
        if (f->type == CFG_STRING) {
            free(*(char **)p);
            *(char **)p = NULL;
        } else if (f->type == CFG_INT_LIST || f->type == CFG_FLOAT_LIST || f->type == CFG_STRING_LIST) {
            CfgList *l = p;
            if (l->s)
                for (int i = 0; i < l->n; i++) free(l->s[i]);
            free(l->i);
            free(l->f);
            free(l->s);
            memset(l, 0, sizeof *l);
        } else if (f->type == CFG_SECTION) {
            cfg_free_obj(f->section, p);
        }
    }
}

// ---- dumping ------------------------------------------------------------------------

typedef struct {
    char *s;
    size_t len, cap;
} Buf;

SAEV_PRINTF(2, 3)
static void bprintf(Buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->s = reallocCheck(b->s, b->cap = 2 * b->cap + (size_t)n + 64);
    }
}

// Plain when it reads back as the same string and cannot be mistaken for a number,
// boolean or null by a reader; double-quoted with escapes otherwise.
static void dump_string(Buf *b, const char *s) {
    int plain = *s && *s != '-';
    for (const char *c = s; *c && plain; c++) plain = isalnum((unsigned char)*c) || strchr("_./+-", *c);
    int b_; int64_t i_; double f_;
    CfgNode probe = {.kind = NODE_SCALAR, .text = (char *)s};
    if (plain && (is_null(&probe) || !parse_bool(s, &b_) || !parse_int(s, &i_) || !parse_float(s, &f_) || !strcasecmp(s, "none"))) plain = 0;
    if (plain) { bprintf(b, "%s", s); return; }
    bprintf(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') bprintf(b, "\\%c", *c);
        else if (*c == '\n') bprintf(b, "\\n");
        else if (*c == '\t') bprintf(b, "\\t");
        else if (*c < 0x20 || *c == 0x7f) bprintf(b, "\\x%02x", *c);
        else bprintf(b, "%c", *c);
    }
    bprintf(b, "\"");
}

// Shortest "%.*g" that reads back to the same double, always with a '.' or exponent.
static void dump_float(Buf *b, double v) {
    if (isnan(v)) { bprintf(b, "null"); return; }
    if (isinf(v)) { bprintf(b, "%s.inf", v < 0 ? "-" : ""); return; }
    char s[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (strtod(s, NULL) == v) break;
    }
    bprintf(b, "%s%s", s, strpbrk(s, ".e") ? "" : ".0");
}

static void dump_section(Buf *b, const CfgSchema *s, const void *obj, int indent) {
    for (int j = 0; j < s->n_fields; j++) {
        const CfgField *f = &s->fields[j];
        const void *p = (const char *)obj + f->offset;
        bprintf(b, "%*s%s:", indent, "", f->key);
        if (f->type == CFG_SECTION) {
            if (f->nullable && !*(const int *)p) bprintf(b, " none\n");
            else if (f->section->n_fields == 0) bprintf(b, " {}\n");
            else bprintf(b, "\n"), dump_section(b, f->section, p, indent + 2);
            continue;
        }
        bprintf(b, " ");
        if (f->type == CFG_INT) {
            int64_t v = *(const int64_t *)p;
            if (v == CFG_UNSET_INT) bprintf(b, "null");
            else bprintf(b, "%lld", (long long)v);
        } else if (f->type == CFG_FLOAT) {
            dump_float(b, *(const double *)p);
        } else if (f->type == CFG_BOOL) {
            bprintf(b, "%s", *(const int *)p ? "true" : "false");
        } else if (f->type == CFG_STRING) {
            const char *v = *(char *const *)p;
            if (v) dump_string(b, v);
            else bprintf(b, "null");
        } else {
            const CfgList *l = p;
            if (l->n == 0 && f->def == CFG_UNSET) {
                bprintf(b, "null\n");
                continue;
            }
            bprintf(b, "[");
            for (int i = 0; i < l->n; i++) {
                if (i) bprintf(b, ", ");
                if (f->type == CFG_INT_LIST) bprintf(b, "%lld", (long long)l->i[i]);
                else if (f->type == CFG_FLOAT_LIST) dump_float(b, l->f[i]);
                else dump_string(b, l->s[i]);
            }
            bprintf(b, "]");
        }
        bprintf(b, "\n");
    }
}

char *cfg_dump(const CfgSchema *schema, const void *obj) {
    Buf b = {.s = mallocCheck(1024), .cap = 1024};
    b.s[0] = 0;
    dump_section(&b, schema, obj, 0);
    return b.s;
}

static void reference_section(Buf *b, const CfgSchema *s, const char *path) {
    static const char *types[] = {"int", "float", "bool", "string", "[int]", "[float]", "[string]", "section"};
    for (int j = 0; j < s->n_fields; j++) {
        const CfgField *f = &s->fields[j];
        char sub[512], type[256], def[128];
        join(sub, sizeof sub, path, f->key);
        snprintf(type, sizeof type, "%s", types[f->type]);
        if (f->choices) snprintf(type, sizeof type, "%s", f->choices);
        else if (f->type != CFG_SECTION && f->min <= f->max) snprintf(type + strlen(type), sizeof type - strlen(type), " in [%.15g, %.15g]", f->min, f->max);
        if (f->type == CFG_SECTION && f->nullable) snprintf(type + strlen(type), sizeof type - strlen(type), " or none");
        snprintf(def, sizeof def, "%s", !f->def ? (f->type == CFG_SECTION ? "" : "required") : f->def == CFG_UNSET ? "unset" : f->def);
        bprintf(b, "%-32s %-26s %-12s %s\n", sub, type, def, f->help ? f->help : "");
        if (f->type == CFG_SECTION) reference_section(b, f->section, sub);
    }
}

char *cfg_reference(const CfgSchema *schema) {
    Buf b = {.s = mallocCheck(1024), .cap = 1024};
    b.s[0] = 0;
    bprintf(&b, "%-32s %-26s %-12s %s\n", "key", "type", "default", "meaning");
    reference_section(&b, schema, "");
    return b.s;
}

void cfg_write_resolved(const CfgSchema *schema, const void *obj, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.resolved.yaml", dir);
    char *text = cfg_dump(schema, obj);
    write_file_atomic_or_die(path, text, strlen(text));
    free(text);
}

// ---- *_or_die -----------------------------------------------------------------------

static SAEV_NORETURN void die(const CfgError *err) { saev_fail_at(__FILE__, __LINE__, SAEV_EXIT_USAGE, "%s", err->msg); }

CfgDoc *cfg_parse_file_or_die(const char *path) {
    CfgError err;
    CfgDoc *doc = cfg_parse_file(path, &err);
    if (!doc) die(&err);
    return doc;
}

void cfg_set_or_die(CfgDoc *doc, const char *assignment) {
    CfgError err;
    if (cfg_set(doc, assignment, &err)) die(&err);
}

int cfg_sweep_or_die(const CfgDoc *doc, CfgDoc ***out) {
    CfgError err;
    int n = cfg_sweep(doc, out, &err);
    if (n < 0) die(&err);
    return n;
}

void cfg_bind_or_die(const CfgDoc *doc, const CfgSchema *schema, void *obj) {
    CfgError err;
    if (cfg_bind(doc, schema, obj, &err)) die(&err);
}
