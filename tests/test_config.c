/*
 * test_config.c: the YAML configuration mechanism (common/config.c, config_args.c,
 * saev_config.c) against a small test schema.
 *
 * Every expected line:column below is counted by hand in the YAML text next to it: the
 * fixtures are written one source line per YAML line, so "line N" is the N-th string
 * literal and "column C" is 1 + the number of characters before the token on that line.
 * Expected values otherwise come from the fixture text itself (the value written) or
 * from the schema's defaults table.
 */
#include <check.h>
#include "testutil.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_args.h"
#include "saev_config.h"

// ---- the test schema ------------------------------------------------------------------

typedef struct {
    int enabled;    // nullable section marker
    int64_t warmup; // steps
    double decay;
} SchedT;

typedef struct {
    int enabled;
    int64_t k;
} AuxT;

typedef struct {
    int64_t batch_size;
    double lr;
    int shuffle;
    char *optimizer;
    CfgList layers; // int64 [n]
    CfgList widths; // double [n]
    CfgList tags;   // char * [n]
    int64_t steps;  // optional, no default
    SchedT sched;   // nullable, absent = on with defaults
    AuxT aux;       // nullable, absent = off (def "none")
} TrainT;

typedef struct {
    char *name;
    TrainT train;
} TopT;

static const CfgField sched_fields[] = {
    {.key = "warmup", .type = CFG_INT, .offset = offsetof(SchedT, warmup), .def = "0", .min = 0, .max = 1e9},
    {.key = "decay", .type = CFG_FLOAT, .offset = offsetof(SchedT, decay), .def = "0.5", .min = 0, .max = 1},
};
static const CfgSchema sched_schema = {"sched", sizeof(SchedT), sched_fields, 2, NULL};
static const CfgField aux_fields[] = {
    {.key = "k", .type = CFG_INT, .offset = offsetof(AuxT, k), .def = "32", .min = 1, .max = 0},
};
static const CfgSchema aux_schema = {"aux", sizeof(AuxT), aux_fields, 1, NULL};

static const char *train_validate(void *section, const CfgNode *node, char *buf, size_t buflen) {
    (void)node;
    const TrainT *t = section;
    if (t->steps != CFG_UNSET_INT && t->sched.enabled && t->sched.warmup > t->steps) {
        snprintf(buf, buflen, "sched.warmup (%lld) exceeds steps (%lld)", (long long)t->sched.warmup, (long long)t->steps);
        return buf;
    }
    return NULL;
}

static const CfgField train_fields[] = {
    {.key = "batch_size", .type = CFG_INT, .offset = offsetof(TrainT, batch_size), .def = "1024", .min = 1, .max = 1e6},
    {.key = "lr", .type = CFG_FLOAT, .offset = offsetof(TrainT, lr), .def = NULL, .min = 0, .max = 1},
    {.key = "shuffle", .type = CFG_BOOL, .offset = offsetof(TrainT, shuffle), .def = "true", .min = 1, .max = 0},
    {.key = "optimizer", .type = CFG_STRING, .offset = offsetof(TrainT, optimizer), .def = "adam", .min = 1, .max = 0, .choices = "adam|sgd"},
    {.key = "layers", .type = CFG_INT_LIST, .offset = offsetof(TrainT, layers), .def = "[-2]", .min = -24, .max = 23},
    {.key = "widths", .type = CFG_FLOAT_LIST, .offset = offsetof(TrainT, widths), .def = CFG_UNSET, .min = 1, .max = 0},
    {.key = "tags", .type = CFG_STRING_LIST, .offset = offsetof(TrainT, tags), .def = "[]", .min = 1, .max = 0},
    {.key = "steps", .type = CFG_INT, .offset = offsetof(TrainT, steps), .def = CFG_UNSET, .min = 1, .max = 0},
    {.key = "sched", .type = CFG_SECTION, .offset = offsetof(TrainT, sched), .def = NULL, .min = 1, .max = 0, .section = &sched_schema, .nullable = 1},
    {.key = "aux", .type = CFG_SECTION, .offset = offsetof(TrainT, aux), .def = "none", .min = 1, .max = 0, .section = &aux_schema, .nullable = 1},
};
static const CfgSchema train_schema = {"train", sizeof(TrainT), train_fields, 10, train_validate};

static const CfgField top_fields[] = {
    {.key = "name", .type = CFG_STRING, .offset = offsetof(TopT, name), .def = "exp", .min = 1, .max = 0},
    {.key = "train", .type = CFG_SECTION, .offset = offsetof(TopT, train), .def = NULL, .min = 1, .max = 0, .section = &train_schema},
};
static const CfgSchema top_schema = {"top", sizeof(TopT), top_fields, 2, NULL};

// ---- helpers --------------------------------------------------------------------------

static char tmpdir[256];
static char cfg_path[300]; // tmpdir/cfg.yaml, the file every fixture is written to

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/saev_test_config_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(cfg_path, sizeof cfg_path, "%s/cfg.yaml", tmpdir);
}

static void remove_tmpdir(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

// Writes text to cfg_path and parses it; NULL (with err) on a parse error.
static CfgDoc *parse_text(const char *text, CfgError *err) {
    FILE *f = fopen(cfg_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    return cfg_parse_file(cfg_path, err);
}

// Parses and binds text into obj; returns cfg_bind's status (parse errors fail the test).
static int bind_text(const char *text, TopT *obj, CfgError *err) {
    CfgDoc *doc = parse_text(text, err);
    ck_assert_msg(doc != NULL, "parse failed: %s", err->msg);
    int rc = cfg_bind(doc, &top_schema, obj, err);
    cfg_free(doc);
    return rc;
}

// Asserts that binding text fails at line:col with a message holding `expect` after "cfg.yaml:line:col: ".
static void expect_error(const char *text, int line, int col, const char *expect) {
    CfgError err;
    TopT t;
    ck_assert_int_eq(bind_text(text, &t, &err), -1);
    char want[1200];
    snprintf(want, sizeof want, "%s:%d:%d: %s", cfg_path, line, col, expect);
    ck_assert_msg(strstr(err.msg, want) == err.msg, "got \"%s\", want prefix \"%s\"", err.msg, want);
    ck_assert_int_eq(err.line, line);
    ck_assert_int_eq(err.col, col);
}

// ---- tests ----------------------------------------------------------------------------

START_TEST(test_defaults) {
    make_tmpdir();
    CfgError err;
    TopT t;
    ck_assert_int_eq(bind_text("train:\n"
                               "  lr: 0.001\n", &t, &err), 0);
    // Every expected value is the default in the tables above.
    ck_assert_str_eq(t.name, "exp");
    ck_assert_int_eq(t.train.batch_size, 1024);
    ck_assert_double_eq(t.train.lr, 0.001);
    ck_assert_int_eq(t.train.shuffle, 1);
    ck_assert_str_eq(t.train.optimizer, "adam");
    ck_assert_int_eq(t.train.layers.n, 1);
    ck_assert_int_eq(t.train.layers.i[0], -2);
    ck_assert_int_eq(t.train.widths.n, 0);
    ck_assert_int_eq(t.train.tags.n, 0);
    ck_assert(t.train.steps == CFG_UNSET_INT);
    ck_assert_int_eq(t.train.sched.enabled, 1); // absent nullable section with def NULL: on
    ck_assert_int_eq(t.train.sched.warmup, 0);
    ck_assert_double_eq(t.train.sched.decay, 0.5);
    ck_assert_int_eq(t.train.aux.enabled, 0); // def "none": off
    cfg_free_obj(&top_schema, &t);
    // An explicit null counts as absent: the default applies.
    ck_assert_int_eq(bind_text("train:\n"
                               "  lr: 0.5\n"
                               "  batch_size: ~\n", &t, &err), 0);
    ck_assert_int_eq(t.train.batch_size, 1024);
    cfg_free_obj(&top_schema, &t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_types) {
    make_tmpdir();
    CfgError err;
    TopT t;
    ck_assert_int_eq(bind_text("train:\n"
                               "  lr: 4.0e-4\n"
                               "  batch_size: 1e3\n"
                               "  shuffle: no\n"
                               "  widths: [1, 2.5]\n"
                               "  tags: [a b, \"null\", 'x: y']\n"
                               "  steps: 100\n", &t, &err), 0);
    ck_assert_double_eq(t.train.lr, 4.0e-4);
    ck_assert_int_eq(t.train.batch_size, 1000);
    ck_assert_int_eq(t.train.shuffle, 0);
    ck_assert_int_eq(t.train.widths.n, 2);
    ck_assert_double_eq(t.train.widths.f[0], 1.0);
    ck_assert_double_eq(t.train.widths.f[1], 2.5);
    ck_assert_int_eq(t.train.tags.n, 3);
    ck_assert_str_eq(t.train.tags.s[0], "a b");
    ck_assert_str_eq(t.train.tags.s[1], "null");
    ck_assert_str_eq(t.train.tags.s[2], "x: y");
    ck_assert_int_eq(t.train.steps, 100);
    cfg_free_obj(&top_schema, &t);
    ck_assert_int_eq(bind_text("train:\n"
                               "  lr: 1\n"
                               "  shuffle: yes\n", &t, &err), 0);
    ck_assert_double_eq(t.train.lr, 1.0); // a float key takes an integer
    ck_assert_int_eq(t.train.shuffle, 1);
    cfg_free_obj(&top_schema, &t);
    // "  batch_size: " is 14 characters: the value starts at column 15.
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  batch_size: 1.5\n", 3, 15, "train.batch_size: expected an integer, got \"1.5\"");
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  batch_size: abc\n", 3, 15, "train.batch_size: expected an integer, got \"abc\"");
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  batch_size: \"64\"\n", 3, 15, "train.batch_size: expected an integer, got the quoted string \"64\"");
    // "  lr: " is 6 characters: column 7.
    expect_error("train:\n"
                 "  lr: fast\n", 2, 7, "train.lr: expected a number, got \"fast\"");
    // "  shuffle: " is 11 characters: column 12.
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  shuffle: 2\n", 3, 12, "train.shuffle: expected true or false, got \"2\"");
    // "  layers: " is 10 characters: column 11.
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  layers: 3\n", 3, 11, "train.layers: expected a list of integers");
    // "  layers: [1, " is 14 characters: the second element at column 15.
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  layers: [1, x]\n", 3, 15, "train.layers[1]: expected an integer, got \"x\"");
    // A section given a scalar: "train: " is 7 characters, column 8.
    expect_error("train: 3\n", 1, 8, "train: expected a mapping (section train), got \"3\"");
    remove_tmpdir();
}
END_TEST

START_TEST(test_range_and_choices) {
    make_tmpdir();
    expect_error("train:\n"
                 "  lr: 1.5\n", 2, 7, "train.lr: \"1.5\" is out of range [0, 1]");
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  batch_size: 0\n", 3, 15, "train.batch_size: \"0\" is out of range [1, 1000000]");
    // Range of list elements: "  layers: [0, " is 14 characters, column 15.
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  layers: [0, 24]\n", 3, 15, "train.layers[1]: \"24\" is out of range [-24, 23]");
    // "  optimizer: " is 13 characters, column 14.
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  optimizer: adamw\n", 3, 14, "train.optimizer: expected one of adam/sgd; got \"adamw\"");
    remove_tmpdir();
}
END_TEST

START_TEST(test_unknown_keys) {
    make_tmpdir();
    // "batchsize" is at line 3, column 3 (after two spaces of indentation).
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  batchsize: 64\n", 3, 3, "train.batchsize: unknown key (did you mean batch_size?)");
    // Nested section: "warmpu" at line 4, column 5.
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  sched:\n"
                 "    warmpu: 5\n", 4, 5, "train.sched.warmpu: unknown key (did you mean warmup?)");
    // Top level, column 1; nothing close: the known keys are listed instead.
    expect_error("name: x\n"
                 "tain: {}\n", 2, 1, "tain: unknown key (did you mean train?)");
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  zzz: 1\n", 3, 3, "train.zzz: unknown key; section train takes: batch_size, lr, shuffle");
    // Unknown top-level section of the real SaevConfig.
    CfgError err;
    CfgDoc *doc = parse_text("run:\n"
                             "  seed: 1\n"
                             "bogus:\n"
                             "  path: x\n", &err);
    ck_assert_ptr_nonnull(doc);
    SaevConfig sc;
    ck_assert_int_eq(cfg_bind(doc, &saev_config_schema, &sc, &err), -1);
    ck_assert_int_eq(err.line, 3);
    ck_assert_int_eq(err.col, 1);
    ck_assert_msg(strstr(err.msg, "cfg.yaml:3:1: bogus: unknown key"), "%s", err.msg);
    cfg_free(doc);
    remove_tmpdir();
}
END_TEST

START_TEST(test_required_and_validate) {
    make_tmpdir();
    // The train mapping starts at its first key, line 2 column 3.
    expect_error("train:\n"
                 "  batch_size: 8\n", 2, 3, "train.lr: missing required key lr in section train");
    // train absent altogether: its defaults apply and lr is missing; the position is the
    // top-level mapping's, line 1 column 1.
    expect_error("name: x\n", 1, 1, "train.lr: missing required key lr in section train");
    // validate(): prefixed with the section's position (line 2, column 3) and path.
    expect_error("train:\n"
                 "  lr: 0.1\n"
                 "  steps: 5\n"
                 "  sched: {warmup: 10}\n", 2, 3, "train: sched.warmup (10) exceeds steps (5)");
    remove_tmpdir();
}
END_TEST

START_TEST(test_syntax_errors) {
    make_tmpdir();
    CfgError err;
    // The second ':' on line 2 ("  lr: 0.1: 2") is the 10th character.
    ck_assert_ptr_null(parse_text("train:\n"
                                  "  lr: 0.1: 2\n", &err));
    ck_assert_int_eq(err.line, 2);
    ck_assert_int_eq(err.col, 10);
    ck_assert_msg(strstr(err.msg, ":2:10: YAML syntax error: mapping values are not allowed"), "%s", err.msg);
    // A tab indenting line 3, column 1.
    ck_assert_ptr_null(parse_text("train:\n"
                                  "  lr: 0.1\n"
                                  "\tsteps: 2\n", &err));
    ck_assert_int_eq(err.line, 3);
    ck_assert_int_eq(err.col, 1);
    // A duplicate key: the second "lr" at line 3, column 3; the first at line 2, column 3.
    ck_assert_ptr_null(parse_text("train:\n"
                                  "  lr: 0.1\n"
                                  "  lr: 0.2\n", &err));
    ck_assert_msg(strstr(err.msg, "cfg.yaml:3:3: train.lr: duplicate key (first given at line 2, column 3)"), "%s", err.msg);
    // Not a mapping at the top.
    ck_assert_ptr_null(parse_text("- a\n", &err));
    ck_assert_msg(strstr(err.msg, "cfg.yaml:1:1: a config must be a mapping"), "%s", err.msg);
    // A missing file names the file.
    ck_assert_ptr_null(cfg_parse_file("/nonexistent/x.yaml", &err));
    ck_assert_msg(strstr(err.msg, "/nonexistent/x.yaml: cannot open"), "%s", err.msg);
    remove_tmpdir();
}
END_TEST

START_TEST(test_overrides) {
    make_tmpdir();
    CfgError err;
    CfgDoc *doc = parse_text("train:\n"
                             "  lr: 0.1\n"
                             "  steps: 50\n"
                             "  layers: [1, 2]\n", &err);
    ck_assert_ptr_nonnull(doc);
    CfgDoc *orig = cfg_clone(doc);
    ck_assert_int_eq(cfg_set(doc, "train.lr=0.25", &err), 0);
    ck_assert_int_eq(cfg_set(doc, "train.sched.warmup=7", &err), 0); // creates train.sched
    ck_assert_int_eq(cfg_set(doc, "train.layers=[3, -1, 5]", &err), 0);
    ck_assert_int_eq(cfg_set(doc, "train.aux={k: 4}", &err), 0);
    ck_assert_int_eq(cfg_set(doc, "train.steps=null", &err), 0); // unsets
    ck_assert_int_eq(cfg_set(doc, "name=hello world", &err), 0);
    TopT t;
    ck_assert_msg(cfg_bind(doc, &top_schema, &t, &err) == 0, "%s", err.msg);
    ck_assert_double_eq(t.train.lr, 0.25);
    ck_assert_int_eq(t.train.sched.enabled, 1);
    ck_assert_int_eq(t.train.sched.warmup, 7);
    ck_assert_int_eq(t.train.layers.n, 3);
    ck_assert_int_eq(t.train.layers.i[0], 3);
    ck_assert_int_eq(t.train.layers.i[1], -1);
    ck_assert_int_eq(t.train.layers.i[2], 5);
    ck_assert_int_eq(t.train.aux.enabled, 1);
    ck_assert_int_eq(t.train.aux.k, 4);
    ck_assert(t.train.steps == CFG_UNSET_INT);
    ck_assert_str_eq(t.name, "hello world");
    cfg_free_obj(&top_schema, &t);
    // The clone kept the file's values.
    ck_assert_int_eq(cfg_bind(orig, &top_schema, &t, &err), 0);
    ck_assert_double_eq(t.train.lr, 0.1);
    ck_assert_int_eq(t.train.layers.n, 2);
    cfg_free_obj(&top_schema, &t);
    // A wrong value from --set names the assignment.
    ck_assert_int_eq(cfg_set(doc, "train.batch_size=abc", &err), 0);
    ck_assert_int_eq(cfg_bind(doc, &top_schema, &t, &err), -1);
    ck_assert_str_eq(err.msg, "--set train.batch_size=abc: train.batch_size: expected an integer, got \"abc\"");
    ck_assert_int_eq(cfg_set(doc, "train.batch_size=8", &err), 0);
    ck_assert_int_eq(cfg_set(doc, "train.btch_size=8", &err), 0);
    ck_assert_int_eq(cfg_bind(doc, &top_schema, &t, &err), -1);
    ck_assert_str_eq(err.msg, "--set train.btch_size=8: train.btch_size: unknown key (did you mean batch_size?)");
    // Malformed assignments.
    const char *bad[] = {"train.lr", "=3", "train..lr=1", ".lr=1", "train.lr.=1", "a b=1"};
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(cfg_set(doc, bad[i], &err), -1);
        ck_assert_msg(strstr(err.msg, "malformed assignment"), "%s: %s", bad[i], err.msg);
    }
    ck_assert_int_eq(cfg_set(doc, "train.lr=[1,", &err), -1);
    ck_assert_msg(strstr(err.msg, "--set train.lr=[1,: YAML syntax error"), "%s", err.msg);
    // Through a scalar: train.lr (file line 2, column 7) is not a mapping.
    ck_assert_int_eq(cfg_set(orig, "train.lr.x=1", &err), -1);
    ck_assert_msg(strstr(err.msg, "train.lr is not a mapping (it is given at ") && strstr(err.msg, "cfg.yaml:2:7)"), "%s", err.msg);
    cfg_free(doc);
    cfg_free(orig);
    remove_tmpdir();
}
END_TEST

START_TEST(test_nullable) {
    make_tmpdir();
    CfgError err;
    TopT t;
    ck_assert_int_eq(bind_text("train:\n"
                               "  lr: 0.1\n"
                               "  sched: none\n"
                               "  aux: {k: 3}\n", &t, &err), 0);
    ck_assert_int_eq(t.train.sched.enabled, 0);
    ck_assert_int_eq(t.train.sched.warmup, 0);
    ck_assert_double_eq(t.train.sched.decay, 0.0); // zeroed, not defaulted
    ck_assert_int_eq(t.train.aux.enabled, 1);
    ck_assert_int_eq(t.train.aux.k, 3);
    cfg_free_obj(&top_schema, &t);
    ck_assert_int_eq(bind_text("train:\n"
                               "  lr: 0.1\n"
                               "  sched:\n", &t, &err), 0); // empty = null = none
    ck_assert_int_eq(t.train.sched.enabled, 0);
    cfg_free_obj(&top_schema, &t);
    // train is not nullable: "train: " is 7 characters, column 8.
    expect_error("train: none\n", 1, 8, "train: this section cannot be none");
    remove_tmpdir();
}
END_TEST

START_TEST(test_sweep_grid) {
    make_tmpdir();
    CfgError err;
    CfgDoc *doc = parse_text("sweep:\n"
                             "  train.lr: [0.1, 0.2]\n"
                             "  train.batch_size: [8, 16]\n"
                             "train:\n"
                             "  lr: 0.5\n"
                             "  steps: 9\n", &err);
    ck_assert_ptr_nonnull(doc);
    CfgDoc **docs;
    ck_assert_int_eq(cfg_sweep(doc, &docs, &err), 4);
    // First key varies slowest: (0.1, 8), (0.1, 16), (0.2, 8), (0.2, 16).
    const double lr[] = {0.1, 0.1, 0.2, 0.2};
    const int64_t bs[] = {8, 16, 8, 16};
    for (int i = 0; i < 4; i++) {
        TopT t;
        ck_assert_msg(cfg_bind(docs[i], &top_schema, &t, &err) == 0, "%s", err.msg); // sweep: removed
        ck_assert_double_eq(t.train.lr, lr[i]);
        ck_assert_int_eq(t.train.batch_size, bs[i]);
        ck_assert_int_eq(t.train.steps, 9);
        cfg_free_obj(&top_schema, &t);
        cfg_free(docs[i]);
    }
    free(docs);
    // Binding without expanding names the sweep key (line 1, column 1).
    TopT t;
    ck_assert_int_eq(cfg_bind(doc, &top_schema, &t, &err), -1);
    ck_assert_msg(strstr(err.msg, "cfg.yaml:1:1: sweep: this command does not expand sweeps"), "%s", err.msg);
    cfg_free(doc);
    // No sweep: one copy.
    doc = parse_text("train: {lr: 0.1}\n", &err);
    ck_assert_int_eq(cfg_sweep(doc, &docs, &err), 1);
    cfg_free(docs[0]);
    free(docs);
    cfg_free(doc);
    remove_tmpdir();
}
END_TEST

START_TEST(test_sweep_nested) {
    make_tmpdir();
    CfgError err;
    // A sweep inside train: its keys are relative to train (sched.warmup = train.sched.warmup).
    CfgDoc *doc = parse_text("name: n\n"
                             "train:\n"
                             "  lr: 0.1\n"
                             "  sweep:\n"
                             "    sched.warmup: [1, 2, 3]\n"
                             "    optimizer: [adam, sgd]\n", &err);
    ck_assert_ptr_nonnull(doc);
    CfgDoc **docs;
    ck_assert_int_eq(cfg_sweep(doc, &docs, &err), 6);
    for (int i = 0; i < 6; i++) {
        TopT t;
        ck_assert_msg(cfg_bind(docs[i], &top_schema, &t, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(t.train.sched.warmup, 1 + i / 2);
        ck_assert_str_eq(t.train.optimizer, i % 2 ? "sgd" : "adam");
        ck_assert_double_eq(t.train.lr, 0.1);
        cfg_free_obj(&top_schema, &t);
        cfg_free(docs[i]);
    }
    free(docs);
    // A swept value with a wrong type is reported at the list element: "    optimizer: [adam, "
    // is 22 characters, so "adamw" is at line 6, column 23.
    cfg_free(doc);
    doc = parse_text("name: n\n"
                     "train:\n"
                     "  lr: 0.1\n"
                     "  sweep:\n"
                     "    sched.warmup: [1, 2, 3]\n"
                     "    optimizer: [adam, adamw]\n", &err);
    ck_assert_int_eq(cfg_sweep(doc, &docs, &err), 6);
    TopT t;
    ck_assert_int_eq(cfg_bind(docs[1], &top_schema, &t, &err), -1);
    ck_assert_msg(strstr(err.msg, "cfg.yaml:6:23: train.optimizer: expected one of adam/sgd"), "%s", err.msg);
    for (int i = 0; i < 6; i++) cfg_free(docs[i]);
    free(docs);
    cfg_free(doc);
    remove_tmpdir();
}
END_TEST

START_TEST(test_sweep_errors) {
    make_tmpdir();
    CfgError err;
    CfgDoc **docs;
    const struct { const char *text; int line, col; const char *msg; } cases[] = {
        // "  train.lr: " is 12 characters: the value at column 13.
        {"sweep:\n"
         "  train.lr: 0.1\n", 2, 13, "train.lr: sweep values must be a list"},
        {"sweep:\n"
         "  train.lr: []\n", 2, 13, "train.lr: sweep values must be a non-empty list"},
        // "sweep: " is 7 characters: column 8.
        {"sweep: 3\n", 1, 8, "sweep: sweep must be a mapping"},
        // The same key swept twice, at the top (line 2) and inside train (line 5, column 5).
        {"sweep:\n"
         "  train.lr: [0.1]\n"
         "train:\n"
         "  sweep:\n"
         "    lr: [0.2]\n", 5, 5, "train.lr: swept twice (also at "},
    };
    for (int i = 0; i < 4; i++) {
        CfgDoc *doc = parse_text(cases[i].text, &err);
        ck_assert_ptr_nonnull(doc);
        ck_assert_int_eq(cfg_sweep(doc, &docs, &err), -1);
        char want[1200];
        snprintf(want, sizeof want, "%s:%d:%d: %s", cfg_path, cases[i].line, cases[i].col, cases[i].msg);
        ck_assert_msg(strstr(err.msg, want) == err.msg, "got \"%s\", want \"%s\"", err.msg, want);
        cfg_free(doc);
    }
    remove_tmpdir();
}
END_TEST

static void assert_same(const TopT *a, const TopT *b) {
    ck_assert_str_eq(a->name, b->name);
    ck_assert_int_eq(a->train.batch_size, b->train.batch_size);
    ck_assert(a->train.lr == b->train.lr); // exact: the dump must round-trip doubles
    ck_assert_int_eq(a->train.shuffle, b->train.shuffle);
    ck_assert_str_eq(a->train.optimizer, b->train.optimizer);
    ck_assert_int_eq(a->train.layers.n, b->train.layers.n);
    for (int i = 0; i < a->train.layers.n; i++) ck_assert_int_eq(a->train.layers.i[i], b->train.layers.i[i]);
    ck_assert_int_eq(a->train.widths.n, b->train.widths.n);
    for (int i = 0; i < a->train.widths.n; i++) ck_assert(a->train.widths.f[i] == b->train.widths.f[i]);
    ck_assert_int_eq(a->train.tags.n, b->train.tags.n);
    for (int i = 0; i < a->train.tags.n; i++) ck_assert_str_eq(a->train.tags.s[i], b->train.tags.s[i]);
    ck_assert(a->train.steps == b->train.steps);
    ck_assert_int_eq(a->train.sched.enabled, b->train.sched.enabled);
    ck_assert_int_eq(a->train.sched.warmup, b->train.sched.warmup);
    ck_assert(a->train.sched.decay == b->train.sched.decay);
    ck_assert_int_eq(a->train.aux.enabled, b->train.aux.enabled);
    ck_assert_int_eq(a->train.aux.k, b->train.aux.k);
}

// parse(dump(x)) binds to x, for configs with awkward strings, exact doubles, unset keys
// and both states of the nullable sections.
START_TEST(test_dump_round_trip) {
    make_tmpdir();
    const char *texts[] = {
        "name: \"yes\"\n"
        "train:\n"
        "  lr: 0.1\n"
        "  widths: [1e-7, 0.30000000000000004, 3]\n"
        "  tags: [\"a b\", \"null\", 'x: y', \"q\\\"uote\", \"\", \"12\", \"-x\", \"tab\\there\", caf\xc3\xa9]\n"
        "  steps: 100\n"
        "  sched: none\n"
        "  aux: {k: 7}\n",
        "train:\n"
        "  lr: 4.0e-4\n",
    };
    for (int c = 0; c < 2; c++) {
        CfgError err;
        TopT a, b;
        ck_assert_int_eq(bind_text(texts[c], &a, &err), 0);
        char *text = cfg_dump(&top_schema, &a);
        CfgDoc *doc = cfg_parse_string(text, "dump", &err);
        ck_assert_msg(doc != NULL, "%s\n%s", err.msg, text);
        ck_assert_msg(cfg_bind(doc, &top_schema, &b, &err) == 0, "%s\n%s", err.msg, text);
        assert_same(&a, &b);
        char *again = cfg_dump(&top_schema, &b);
        ck_assert_str_eq(text, again);
        free(text);
        free(again);
        cfg_free(doc);
        cfg_free_obj(&top_schema, &a);
        cfg_free_obj(&top_schema, &b);
    }
    remove_tmpdir();
}
END_TEST

START_TEST(test_write_resolved) {
    make_tmpdir();
    CfgError err;
    TopT t;
    ck_assert_int_eq(bind_text("train: {lr: 0.125}\n", &t, &err), 0);
    cfg_write_resolved(&top_schema, &t, tmpdir);
    char path[400], text[4096];
    snprintf(path, sizeof path, "%s/config.resolved.yaml", tmpdir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    char *dump = cfg_dump(&top_schema, &t);
    ck_assert_str_eq(text, dump);
    ck_assert_ptr_nonnull(strstr(text, "  lr: 0.125\n"));
    free(dump);
    // Only cfg.yaml and the resolved file: no temporary left behind.
    DIR *d = opendir(tmpdir);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) files += e->d_name[0] != '.';
    closedir(d);
    ck_assert_int_eq(files, 2);
    cfg_free_obj(&top_schema, &t);
    remove_tmpdir();
}
END_TEST

// The reference lists every key with its type, range or choices and default (the schema's).
START_TEST(test_reference) {
    char *text = cfg_reference(&top_schema);
    const char *want[] = {"train.batch_size", "int in [1, 1000000]", "1024", "train.lr", "float in [0, 1]", "required",
                          "train.optimizer", "adam|sgd", "train.sched.warmup", "train.aux", "section or none", "none"};
    const char *at = text;
    for (int i = 0; i < 12; i++) { // in this order
        const char *hit = strstr(at, want[i]);
        ck_assert_msg(hit != NULL, "\"%s\" missing after %.40s in:\n%s", want[i], at, text);
        at = hit + strlen(want[i]);
    }
    free(text);
}
END_TEST

START_TEST(test_config_args) {
    char *argv[] = {"train", "a.yaml", "--set", "x.y=1", "--ranks", "4", "--device=cpu", "--port", "80", "extra", "--verbose", "--set=a=b", NULL};
    const char *value_flags[] = {"--port", NULL};
    CfgArgs a;
    char err[256];
    ck_assert_int_eq(cfg_args_parse(12, argv, value_flags, &a, err, sizeof err), 0);
    ck_assert_str_eq(a.config_path, "a.yaml");
    ck_assert_int_eq(a.n_sets, 2);
    ck_assert_str_eq(a.sets[0], "x.y=1");
    ck_assert_str_eq(a.sets[1], "a=b");
    ck_assert_int_eq(a.ranks, 4);
    ck_assert_str_eq(a.device, "cpu");
    ck_assert_int_eq(a.argc, 5);
    const char *left[] = {"train", "--port", "80", "extra", "--verbose"};
    for (int i = 0; i < 5; i++) ck_assert_str_eq(a.argv[i], left[i]);
    ck_assert_ptr_null(a.argv[5]);
    cfg_args_free(&a);
    struct { int argc; char *argv[4]; const char *msg; } bad[] = {
        {2, {"c", "--set"}, "--set needs a value: --set key.path=value"},
        {3, {"c", "--set", "novalue"}, "--set novalue: expected --set key.path=value"},
        {3, {"c", "--ranks", "0"}, "--ranks 0: expected a positive number of ranks"},
        {2, {"c", "--ranks="}, "--ranks needs a value: --ranks N"},
        {3, {"c", "--device", "gpu"}, "--device gpu: expected cpu, cuda or auto"},
        {2, {"c", "--port"}, "--port needs a value"},
    };
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(cfg_args_parse(bad[i].argc, bad[i].argv, value_flags, &a, err, sizeof err), -1);
        ck_assert_str_eq(err, bad[i].msg);
    }
}
END_TEST

START_TEST(test_saev_config_load) {
    make_tmpdir();
    CfgError err;
    CfgDoc *doc = parse_text("run:\n"
                             "  name: demo\n"
                             "  sweep:\n"
                             "    seed: [1, 2]\n", &err);
    ck_assert_ptr_nonnull(doc);
    cfg_free(doc);
    char *argv[] = {"config", cfg_path, "--set", "run.out_dir=/tmp/out", "--ranks", "3", "--device", "cpu", NULL};
    CfgArgs a;
    cfg_args_parse_or_die(8, argv, NULL, &a);
    SaevConfig *cfgs;
    ck_assert_int_eq(saev_config_load_or_die(&a, &cfgs), 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_str_eq(cfgs[i].run.name, "demo");
        ck_assert_str_eq(cfgs[i].run.out_dir, "/tmp/out");
        ck_assert_int_eq(cfgs[i].run.ranks, 3);
        ck_assert_str_eq(cfgs[i].run.device, "cpu");
        ck_assert_int_eq(cfgs[i].run.seed, 1 + i);
        ck_assert_str_eq(cfgs[i].run.log_level, "info"); // default
    }
    saev_config_free(cfgs, 2);
    cfg_args_free(&a);
    remove_tmpdir();
}
END_TEST

// The *_or_die forms exit with status 2 (run in a forked child by Check).
START_TEST(test_bind_or_die_exits_2) {
    CfgError err;
    CfgDoc *doc = cfg_parse_string("run: {ranks: 0}\n", "inline", &err);
    SaevConfig c;
    cfg_bind_or_die(doc, &saev_config_schema, &c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_types);
    tcase_add_test(tc, test_range_and_choices);
    tcase_add_test(tc, test_unknown_keys);
    tcase_add_test(tc, test_required_and_validate);
    tcase_add_test(tc, test_syntax_errors);
    tcase_add_test(tc, test_overrides);
    tcase_add_test(tc, test_nullable);
    tcase_add_test(tc, test_sweep_grid);
    tcase_add_test(tc, test_sweep_nested);
    tcase_add_test(tc, test_sweep_errors);
    tcase_add_test(tc, test_dump_round_trip);
    tcase_add_test(tc, test_write_resolved);
    tcase_add_test(tc, test_reference);
    tcase_add_test(tc, test_config_args);
    tcase_add_test(tc, test_saev_config_load);
    tcase_add_exit_test(tc, test_bind_or_die_exits_2, 2);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
