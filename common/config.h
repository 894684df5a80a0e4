/*
 * config.h: YAML configuration into typed structs.
 *
 * A config file is parsed (libyaml) into a tree that remembers the file, line and
 * column of every key and value. `--set a.b.c=value` overrides edit that tree. A
 * `sweep:` mapping anywhere in the tree (keys are dotted paths relative to the mapping
 * that holds it, values are lists) expands the tree into the grid product of configs.
 * cfg_bind then fills a struct described by a CfgSchema: defaults, type checks, range
 * checks, allowed choices, required keys, and an error for every unknown key. Every
 * error names file:line:column and the full key path; the *_or_die forms print it and
 * exit with status 2 before anything is written.
 *
 * Each module owns its section: a plain struct plus a `const CfgSchema` describing it
 * (e.g. common/sae/train_config.c); common/saev_config.c composes the sections into the
 * top-level schema. cfg_dump writes the resolved struct (defaults included) back as
 * YAML, which every run stores beside its outputs.
 *
 * Storage per type (the struct field at `offset` must have this C type):
 *   CFG_INT     int64_t            CFG_FLOAT   double          CFG_BOOL  int (0/1)
 *   CFG_STRING  char * (malloc'd)  CFG_*_LIST  CfgList         CFG_SECTION the section's struct, embedded
 * Optional keys without a default ("def" = CFG_UNSET) stay: INT = CFG_UNSET_INT,
 * FLOAT = NaN, STRING = NULL, lists n = 0, so a module can tell "given" from "absent"
 * (e.g. train.n_tokens or train.steps).
 * A CFG_SECTION field with `nullable` set also accepts the scalar `none` (or null):
 * then the section struct is zeroed, and its first member, which must be `int enabled`,
 * stays 0; otherwise `enabled` is set to 1 (unless the section lists `enabled` as a key).
 *
 * Details the declarations below rely on:
 *  - A null value (empty, ~, null) counts as absent: the default applies, an optional
 *    key stays unset, a required key is missing. So `--set train.steps=null` unsets.
 *  - Quoted scalars are strings: "5" is rejected where an integer is expected.
 *    CFG_INT accepts decimal integers and integral float notation (1e6); CFG_FLOAT any
 *    number (4, 4.0e-4, .inf); CFG_BOOL true/false/yes/no/on/off (any case).
 *  - An absent CFG_SECTION whose def is NULL or CFG_UNSET binds as an empty mapping (its
 *    own defaults and required keys apply); give def "none" to make a nullable section
 *    off unless configured.
 *  - validate()'s message is prefixed with the section's position and path.
 *  - Errors point at the node they concern; a value from `--set k=v` or from a schema
 *    default is named by that source ("--set train.lr=abc: train.lr: ...").
 *  - Sweeps: with several sweep: mappings (at any levels) the axes are ordered by
 *    document order; the first varies slowest. An axis replaces whatever its key held.
 */
#ifndef SAEV_CONFIG_H
#define SAEV_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CFG_UNSET ((const char *)1) /* "def" marker: optional, no default */
#define CFG_UNSET_INT INT64_MIN

typedef enum { CFG_INT, CFG_FLOAT, CFG_BOOL, CFG_STRING, CFG_INT_LIST, CFG_FLOAT_LIST, CFG_STRING_LIST, CFG_SECTION } CfgType;

typedef struct {
    int n;       /* number of elements */
    int64_t *i;  /* [n] for CFG_INT_LIST */
    double *f;   /* [n] for CFG_FLOAT_LIST */
    char **s;    /* [n] for CFG_STRING_LIST */
} CfgList;

struct CfgSchema;

typedef struct CfgField {
    const char *key;                 /* name inside its section */
    CfgType type;
    size_t offset;                   /* offsetof(section struct, field) */
    const char *def;                 /* default as YAML text ("16384", "true", "[1, 2]"); NULL = required; CFG_UNSET = optional */
    double min, max;                 /* inclusive range for numbers and list elements; unchecked when min > max */
    const char *choices;             /* CFG_STRING: allowed values "a|b|c"; NULL = any string */
    const struct CfgSchema *section; /* CFG_SECTION: the nested schema */
    int nullable;                    /* CFG_SECTION: may be given as `none` */
    const char *help;                /* one line for the config reference */
} CfgField;

typedef struct CfgNode CfgNode; /* opaque YAML node with its position */

typedef struct CfgSchema {
    const char *name;        /* section name, for messages */
    size_t size;             /* sizeof the section struct */
    const CfgField *fields;  /* [n_fields] */
    int n_fields;
    /* Optional cross-key checks after binding (e.g. "k <= d_sae"). Return NULL when fine,
     * else the message; `node` gives the section's position for cfg_node_where. */
    const char *(*validate)(void *section, const CfgNode *node, char *buf, size_t buflen);
} CfgSchema;

typedef struct CfgDoc CfgDoc; /* a parsed config: tree + file name */

typedef struct {
    char msg[1024]; /* "file:line:col: key.path: problem" */
    int line, col;  /* 1-based; 0 when unknown */
} CfgError;

/* Parsing. Return NULL and fill err on failure. */
CfgDoc *cfg_parse_file(const char *path, CfgError *err);
CfgDoc *cfg_parse_string(const char *text, const char *name, CfgError *err);
CfgDoc *cfg_clone(const CfgDoc *doc);
void cfg_free(CfgDoc *doc);

/* "a.b.c=value": the value is parsed as YAML (scalars, [lists] and {maps}). 0 or -1. */
int cfg_set(CfgDoc *doc, const char *assignment, CfgError *err);
/* Expands every sweep: mapping; *out gets a malloc'd array of docs (1 when no sweep). */
int cfg_sweep(const CfgDoc *doc, CfgDoc ***out, CfgError *err);
/* Fills obj (schema->size bytes, zeroed first). 0 or -1. */
int cfg_bind(const CfgDoc *doc, const CfgSchema *schema, void *obj, CfgError *err);
/* Releases the strings and lists cfg_bind allocated inside obj. */
void cfg_free_obj(const CfgSchema *schema, void *obj);
/* The resolved struct as YAML text (malloc'd). */
char *cfg_dump(const CfgSchema *schema, const void *obj);
/* The config reference: one line per key (dotted path, type with range or choices,
 * default, help), for `saev config --reference` and the README (malloc'd). */
char *cfg_reference(const CfgSchema *schema);
/* "file:line:col" of a node, for messages from validate(). */
const char *cfg_node_where(const CfgNode *node, char *buf, size_t buflen);
/* The value of `key` in a mapping node (e.g. validate()'s section), or NULL. */
const CfgNode *cfg_node_child(const CfgNode *map, const char *key);
/* The node at a dotted key ("slurm.tasks_per_node") when the document gives it, else NULL. */
const CfgNode *cfg_doc_find(const CfgDoc *doc, const char *dotted);
/* Writes cfg_dump's text to <dir>/config.resolved.yaml atomically (tmp + rename); the
 * directory must exist. Fails the job (exit 1) when it cannot write. */
void cfg_write_resolved(const CfgSchema *schema, const void *obj, const char *dir);

/* Same as above but print the error and exit(2). */
CfgDoc *cfg_parse_file_or_die(const char *path);
void cfg_set_or_die(CfgDoc *doc, const char *assignment);
int cfg_sweep_or_die(const CfgDoc *doc, CfgDoc ***out);
void cfg_bind_or_die(const CfgDoc *doc, const CfgSchema *schema, void *obj);

#endif
