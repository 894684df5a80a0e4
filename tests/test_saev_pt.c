/*
 * test_saev_pt.c: saev's own sae.pt checkpoints (common/sae/saev_pt.h), written by torch
 * exactly as saev's dump functions of both eras do (tests/saev_pt_write.py says which
 * saev commit each follows): ReLU (preprint, centred encoder), ReLU, TopK, BatchTopK
 * (trained and untrained threshold) and a Matryoshka-trained TopK SAE (current).
 * For each:
 *  - the config read from the header (activation, k, centring, threshold) is saev's;
 *  - W_enc, b_enc, W_dec, b_dec are bit-identical to the tensors torch saved (W_enc is
 *    stored column-major by saev and gathered through its strides);
 *  - encoding a batch through sae_checkpoint_load gives the float64 numpy codes of the
 *    original tensors: the same active latents and every value within the float32
 *    rounding bound the writer computed (see saev_pt_write.py);
 *  - `import-sae` (saev_pt_import) writes a safetensors checkpoint that encodes to the
 *    same bits and keeps saev's header line verbatim;
 *  - SAEs trained on the preprint's (x - mean) / scalar (mean and scalar torch.save'd
 *    beside them, as saev's scale_mean / scale_norm files; centred and uncentred
 *    encoders): the import folds them in, and x * data_scale encodes to the numpy codes.
 * Malformed files (truncated, no header, unknown schema, tensor shapes that disagree with
 * the header, deflated entries, a pickle naming collections.Counter) are refused with a
 * message naming the file and the problem; through sae_checkpoint_load they exit 2.
 * Needs /usr/bin/python3 with torch (python3-torch): exits 77 (skipped) without it.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "sae/checkpoint.h"
#include "sae/saev_pt.h"
#include "testutil.h"

static char gen_dir[512];

typedef struct {
    const char *name;
    const char *era;
    SaeActivation activation;
    int k;
    int center;
    float threshold; // what saev's eval compares against (0 = plain ReLU)
    int scaled;      // trained on (x - mean) / scalar: CASE.mean.pt and CASE.scalar.pt beside it
} Case;

/* Expected configs: the arguments saev_pt_write.py's main() passes to make_case. */
static const Case cases[] = {
    {"preprint_relu", "preprint", SAE_RELU, 0, 1, 0.0f, 0},
    {"current_relu", "current", SAE_RELU, 0, 0, 0.0f, 0},
    {"current_topk", "current", SAE_TOPK, 6, 0, 0.0f, 0},
    {"current_batchtopk", "current", SAE_BATCH_TOPK, 6, 0, 0.75f, 0},
    {"current_batchtopk_untrained", "current", SAE_BATCH_TOPK, 6, 0, 0.0f, 0},
    {"current_matryoshka_topk", "current", SAE_TOPK, 8, 0, 0.0f, 0},
    {"preprint_relu_scaled", "preprint", SAE_RELU, 0, 1, 0.0f, 1},
    {"current_topk_scaled", "current", SAE_TOPK, 6, 0, 0.0f, 1},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

static const char *gen_file(const char *name, const char *ext) {
    static char buf[4][1024];
    static int slot = 0;
    char *out = buf[slot++ % 4];
    snprintf(out, 1024, "%s/%s%s", gen_dir, name, ext);
    return out;
}

static const StTensor *ref_tensor(const SafeTensors *st, const char *name, StDtype dt, int64_t numel) {
    const StTensor *t = st_find(st, name);
    ck_assert_msg(t && t->dtype == dt && t->numel == numel, "%s: reference tensor %s missing or misshapen", st->path, name);
    return t;
}

/* Codes of the SAE at ckpt for the case's batch; returns malloc'd f [B, S]. */
static float *encode(const char *ckpt, const float *x, int B, int *S_out) {
    Sae sae;
    sae_checkpoint_load(&sae, ckpt, B);
    int S = sae.cfg.d_sae, d = sae.cfg.d_model;
    float *f = mallocCheck(sizeof(float) * (size_t)B * S), *xh = mallocCheck(sizeof(float) * (size_t)B * d);
    sae_encode_decode_eval(&sae, x, B, f, xh);
    free(xh);
    sae_destroy(&sae);
    *S_out = S;
    return f;
}

/* Same active latents as the float64 numpy codes and every value within its bound. */
static void check_codes(const Case *c, const float *f, const double *f_ref, const double *tol, int B, int S) {
    int64_t active = 0;
    for (int64_t e = 0; e < (int64_t)B * S; e++) {
        int on_ref = f_ref[e] != 0.0, on = f[e] != 0.0f;
        ck_assert_msg(on == on_ref, "%s: row %lld latent %lld active %d, numpy says %d (h %g)", c->name, (long long)(e / S), (long long)(e % S), on, on_ref, f_ref[e]);
        double diff = fabs((double)f[e] - f_ref[e]);
        ck_assert_msg(diff <= tol[e], "%s: code [%lld] = %.9g, numpy %.9g, bound %.3g", c->name, (long long)e, f[e], f_ref[e], tol[e]); /* NaN fails */
        active += on;
    }
    ck_assert_msg(active > 0, "%s: no latent active in the batch: the comparison would be empty", c->name);
    if (c->activation == SAE_TOPK) ck_assert_int_eq(active, (int64_t)B * c->k);
}

START_TEST(test_case) {
    const Case *c = &cases[_i];
    const char *pt_path = gen_file(c->name, ".pt");
    SaevPt pt;
    char err[1024];
    ck_assert_msg(saev_pt_read(pt_path, &pt, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(pt.era, c->era);
    ck_assert_int_eq(pt.cfg.d_model, 24);
    ck_assert_int_eq(pt.cfg.d_sae, 96);
    ck_assert_int_eq(pt.cfg.activation, c->activation);
    if (c->activation != SAE_RELU) ck_assert_int_eq(pt.cfg.k, c->k);
    ck_assert_int_eq(pt.cfg.center_input, c->center);
    ck_assert_msg(pt.threshold == c->threshold, "threshold %g, saev's %g", pt.threshold, c->threshold);

    SafeTensors ref;
    ck_assert_msg(st_open(&ref, gen_file(c->name, ".ref.safetensors"), err, sizeof err) == 0, "%s", err);
    int d = 24, S = 96;
    ck_assert_msg(!memcmp(pt.w_enc, ref_tensor(&ref, "W_enc", ST_F32, d * S)->data, sizeof(float) * d * S), "W_enc differs from torch's");
    ck_assert_msg(!memcmp(pt.b_enc, ref_tensor(&ref, "b_enc", ST_F32, S)->data, sizeof(float) * S), "b_enc differs from torch's");
    ck_assert_msg(!memcmp(pt.w_dec, ref_tensor(&ref, "W_dec", ST_F32, S * d)->data, sizeof(float) * S * d), "W_dec differs from torch's");
    ck_assert_msg(!memcmp(pt.b_dec, ref_tensor(&ref, "b_dec", ST_F32, d)->data, sizeof(float) * d), "b_dec differs from torch's");

    const StTensor *xt = st_require(&ref, "x");
    int B = (int)xt->shape[0];
    float *x = mallocCheck(sizeof(float) * (size_t)B * d);
    memcpy(x, ref_tensor(&ref, "x", ST_F32, (int64_t)B * d)->data, sizeof(float) * (size_t)B * d);
    double *f_ref = mallocCheck(sizeof(double) * (size_t)B * S), *tol = mallocCheck(sizeof(double) * (size_t)B * S);
    memcpy(f_ref, ref_tensor(&ref, "f_ref", ST_F64, (int64_t)B * S)->data, sizeof(double) * (size_t)B * S);
    memcpy(tol, ref_tensor(&ref, "tol", ST_F64, (int64_t)B * S)->data, sizeof(double) * (size_t)B * S);

    /* The codes of the sae.pt itself (unscaled cases), then of its import, which folds in
     * the preprint's scaling: saev-c feeds it x * data_scale, as evaluate does. */
    int S_got;
    float *f = NULL;
    if (!c->scaled) {
        f = encode(pt_path, x, B, &S_got);
        ck_assert_int_eq(S_got, S);
        check_codes(c, f, f_ref, tol, B, S);
    }
    float data_scale = 1.0f, *mean = NULL;
    if (c->scaled) {
        int64_t n;
        float *sc = torch_tensor_read(gen_file(c->name, ".scalar.pt"), &n, err, sizeof err);
        ck_assert_msg(sc && n == 1, "%s", err);
        data_scale = (float)(1.0 / sc[0]);
        free(sc);
        mean = torch_tensor_read(gen_file(c->name, ".mean.pt"), &n, err, sizeof err);
        ck_assert_msg(mean && n == d, "%s", err);
    }
    const char *st_path = scratch_file("imported.safetensors");
    saev_pt_import(pt_path, st_path, data_scale, mean);
    free(mean);
    float *xs = mallocCheck(sizeof(float) * (size_t)B * d);
    for (int64_t e = 0; e < (int64_t)B * d; e++) xs[e] = x[e] * data_scale;
    float *f2 = encode(st_path, xs, B, &S_got);
    free(xs);
    check_codes(c, f2, f_ref, tol, B, S);
    if (f) ck_assert_msg(!memcmp(f, f2, sizeof(float) * (size_t)B * S), "%s: the imported checkpoint encodes differently", c->name);
    SafeTensors imp;
    st_open_or_die(&imp, st_path);
    ck_assert_str_eq(st_meta(&imp, "saev_header"), pt.header);
    ck_assert_str_eq(st_meta(&imp, "saev_era"), c->era);
    ck_assert_msg(st_find(&imp, "threshold") ? c->activation == SAE_BATCH_TOPK : c->activation != SAE_BATCH_TOPK, "threshold tensor only for batch-top-k");
    st_close(&imp);
    SaeConfig c1, c2;
    float s1, s2;
    ck_assert_msg(sae_checkpoint_read_config(pt_path, &c1, &s1, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(sae_checkpoint_read_config(st_path, &c2, &s2, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c1.activation, c2.activation);
    ck_assert_int_eq(c1.center_input, c2.center_input);
    ck_assert_int_eq(c1.k, c2.k);
    ck_assert(s1 == 1.0f && s2 == data_scale);

    free(f);
    free(f2);
    free(x);
    free(f_ref);
    free(tol);
    st_close(&ref);
    saev_pt_free(&pt);
}
END_TEST

/* Each malformed file and a phrase its message must hold. */
static const char *bad[][2] = {
    {"bad_truncated", "end-of-central-directory"},
    {"bad_noheader", "without saev's JSON header line"},
    {"bad_schema", "schema 9"},
    {"bad_shape", "has shape [24, 96]; the header's config wants [24, 97]"},
    {"bad_compressed", "compressed"},
    {"bad_global", "collections.Counter"},
};
enum { N_BAD = sizeof bad / sizeof bad[0] };

START_TEST(test_refused) {
    const char *path = gen_file(bad[_i][0], ".pt");
    SaevPt pt;
    char err[1024] = "";
    ck_assert_int_eq(saev_pt_read(path, &pt, err, sizeof err), -1);
    ck_assert_msg(strstr(err, path) && strstr(err, bad[_i][1]), "%s: message \"%s\" lacks the file or \"%s\"", bad[_i][0], err, bad[_i][1]);
    ck_assert_int_eq(saev_pt_detect(path), 1); /* so every loader explains, not the safetensors parser */
}
END_TEST

START_TEST(test_load_refused_exits_2) {
    Sae sae;
    sae_checkpoint_load(&sae, gen_file(bad[_i][0], ".pt"), 1);
}
END_TEST

/* Corrupted copies of a good file (bytes overwritten at seeded places, truncations at
 * every 97th length): the reader returns 0 or -1 with the file's name, never crashes or
 * reads outside the file (run under ASan to see the latter). */
START_TEST(test_corrupted_never_crash) {
    const char *good = gen_file("current_batchtopk", ".pt");
    FILE *fp = fopen(good, "rb");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    unsigned char *buf = mallocCheck((size_t)n), *bad = mallocCheck((size_t)n);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, fp), n);
    fclose(fp);
    const char *path = scratch_file("corrupt.pt");
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    int refused = 0, read_ok = 0;
    for (int trial = 0; trial < 400; trial++) {
        memcpy(bad, buf, (size_t)n);
        long len = n;
        if (trial % 4 == 3) len = (trial * 97L) % n;
        else
            for (int k = 0; k < 1 + trial % 8; k++) {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                bad[rng % (uint64_t)n] = (unsigned char)(rng >> 32);
            }
        write_bytes(path, bad, (size_t)len);
        SaevPt pt;
        char err[1024] = "";
        int rc = saev_pt_read(path, &pt, err, sizeof err);
        ck_assert(rc == 0 || rc == -1);
        if (rc == 0) { read_ok++; saev_pt_free(&pt); }
        else { refused++; ck_assert_msg(strstr(err, path) != NULL, "message without the file: %s", err); }
    }
    ck_assert_int_gt(refused, 0);
    free(buf);
    free(bad);
}
END_TEST

START_TEST(test_not_pt) {
    /* A saev-c checkpoint is not mistaken for a sae.pt, and a short junk file is neither. */
    ck_assert_int_eq(saev_pt_detect(gen_file("current_topk", ".ref.safetensors")), 0);
    const char *junk = scratch_file("junk.pt");
    write_bytes(junk, "{\"x", 3);
    ck_assert_int_eq(saev_pt_detect(junk), 0);
}
END_TEST

int main(void) {
    if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
        printf("SKIP: /usr/bin/python3 cannot import torch (python3-torch), which writes the sae.pt files\n");
        return 77;
    }
    snprintf(gen_dir, sizeof gen_dir, "%s", scratch_dir());
    char cmd[1200];
    const char *root = getenv("SAEV_ROOT");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/saev_pt_write.py %s", root ? root : ".", gen_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_saev_pt: %s failed\n", cmd);
        return 1;
    }
    Suite *s = suite_create("saev_pt");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_case, 0, N_CASES);
    tcase_add_loop_test(tc, test_refused, 0, N_BAD);
    tcase_add_loop_exit_test(tc, test_load_refused_exits_2, 2, 0, N_BAD);
    tcase_add_test(tc, test_not_pt);
    tcase_add_test(tc, test_corrupted_never_crash);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
