/*
 * test_safetensors.c: the safetensors reader on the shared fixtures (tensor names, shapes
 * and a value cross-checked against a second tensor of the same file), a write/read
 * round trip for every dtype with metadata, and hand-made malformed files that must be
 * rejected with a message naming the file and the problem (never a crash).
 */
#include <check.h>
#include <dirent.h>
#include <stdint.h>

#include "dtype.h"
#include "safetensors.h"
#include "testutil.h"

START_TEST(test_fixture_model) {
    SafeTensors st;
    char err[1024];
    ck_assert_msg(st_open(&st, fixture_path("hf-vit/clip/model.safetensors"), err, sizeof err) == 0, "%s", err);
    /* Shapes from fixtures/hf-vit/clip/config.json: hidden 48, patch 8, 32x32 image -> 16 patches + CLS. */
    const StTensor *pos = st_require(&st, "embeddings.position_embedding.weight");
    ck_assert_int_eq(pos->dtype, ST_F32);
    ck_assert_int_eq(pos->ndim, 2);
    ck_assert_int_eq(pos->shape[0], 17);
    ck_assert_int_eq(pos->shape[1], 48);
    const StTensor *pw = st_require(&st, "embeddings.patch_embedding.weight");
    ck_assert_int_eq(pw->ndim, 4);
    ck_assert_int_eq(pw->shape[0] * pw->shape[1] * pw->shape[2] * pw->shape[3], 48 * 3 * 8 * 8);
    ck_assert_ptr_null(st_find(&st, "no.such.tensor"));
    st_close(&st);
}
END_TEST

START_TEST(test_fixture_expected) {
    SafeTensors st;
    char err[1024];
    ck_assert_msg(st_open(&st, fixture_path("hf-vit/dinov2/expected.safetensors"), err, sizeof err) == 0, "%s", err);
    /* README: hidden_states [L+1,B,T,D] = [4,2,T,48]; last_hidden_state [B,T,D]. */
    const StTensor *hs = st_require(&st, "hidden_states"), *pv = st_require(&st, "pixel_values");
    ck_assert_int_eq(hs->ndim, 4);
    ck_assert_int_eq(hs->shape[0], 4);
    ck_assert_int_eq(hs->shape[1], 2);
    ck_assert_int_eq(hs->shape[3], 48);
    ck_assert_int_eq(pv->shape[1], 3);
    ck_assert_int_eq(pv->shape[2], 32);
    float *x = st_load_f32(&st, "pixel_values", 4, (int64_t[]){2, 3, 32, 32});
    int finite = 1;
    for (int i = 0; i < 2 * 3 * 32 * 32; i++) finite &= isfinite(x[i]);
    ck_assert(finite);
    free(x);
    st_close(&st);
}
END_TEST

START_TEST(test_roundtrip_all_dtypes) {
    float f32[6] = {1.5f, -2.25f, 0.0f, 3.0e-5f, 65504.0f, -1e-3f};
    uint16_t f16[6], bf16[6];
    for (int i = 0; i < 6; i++) { f16[i] = f32_to_f16(f32[i]); bf16[i] = f32_to_bf16(f32[i]); }
    double f64[2] = {1.0 / 3.0, -7.0};
    int64_t i64[3] = {INT64_C(1) << 40, -1, 7};
    int32_t i32[2] = {-5, 123456};
    uint8_t u8[4] = {0, 1, 254, 255};
    StWriter w;
    st_writer_init(&w);
    st_writer_add(&w, "a_f32", ST_F32, 2, (int64_t[]){2, 3}, f32);
    st_writer_add(&w, "b_f16", ST_F16, 1, (int64_t[]){6}, f16);
    st_writer_add(&w, "c_bf16", ST_BF16, 1, (int64_t[]){6}, bf16);
    st_writer_add(&w, "d_f64", ST_F64, 1, (int64_t[]){2}, f64);
    st_writer_add(&w, "e_i64", ST_I64, 1, (int64_t[]){3}, i64);
    st_writer_add(&w, "f_i32", ST_I32, 1, (int64_t[]){2}, i32);
    st_writer_add(&w, "g_u8", ST_U8, 2, (int64_t[]){2, 2}, u8);
    st_writer_add(&w, "h_empty", ST_F32, 2, (int64_t[]){0, 4}, f32);
    st_writer_meta(&w, "format", "pt");
    st_writer_meta(&w, "config", "{\"k\": 32}");
    const char *path = scratch_file("roundtrip.safetensors");
    st_writer_write_or_die(&w, path);
    st_writer_free(&w);
    { /* no temporary left: the atomic writer's temporaries are named <file>.tmp<pid> (fsutil.h) */
        DIR *dir = opendir(scratch_dir());
        ck_assert_ptr_nonnull(dir);
        for (struct dirent *e; (e = readdir(dir));) ck_assert_msg(!strstr(e->d_name, ".tmp"), "temporary left: %s", e->d_name);
        closedir(dir);
    }

    SafeTensors st;
    char err[1024];
    ck_assert_msg(st_open(&st, path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(st.n_tensors, 8);
    ck_assert_str_eq(st_meta(&st, "config"), "{\"k\": 32}");
    ck_assert_str_eq(st_meta(&st, "format"), "pt");
    float out[6];
    st_to_f32(st_require(&st, "a_f32"), out);
    for (int i = 0; i < 6; i++) ck_assert(out[i] == f32[i]);
    /* f16: 11 significant bits -> relative error <= 2^-11 for normal values (3e-5 is f16-subnormal: abs 2^-25). */
    st_to_f32(st_require(&st, "b_f16"), out);
    for (int i = 0; i < 6; i++) ck_assert_msg(fabsf(out[i] - f32[i]) <= fabsf(f32[i]) * 0x1p-11f + 0x1p-25f, "f16 %d: %g vs %g", i, out[i], f32[i]);
    /* bf16: 8 significant bits -> relative error <= 2^-8. */
    st_to_f32(st_require(&st, "c_bf16"), out);
    for (int i = 0; i < 6; i++) ck_assert_msg(fabsf(out[i] - f32[i]) <= fabsf(f32[i]) * 0x1p-8f, "bf16 %d", i);
    const StTensor *e = st_require(&st, "e_i64");
    int64_t i64b[3];
    memcpy(i64b, e->data, sizeof i64b);
    ck_assert(i64b[0] == i64[0] && i64b[1] == -1 && i64b[2] == 7);
    const StTensor *g = st_require(&st, "g_u8");
    ck_assert_int_eq(((const uint8_t *)g->data)[3], 255);
    ck_assert_int_eq(st_require(&st, "h_empty")->numel, 0);
    st_close(&st);
}
END_TEST

/* Builds a file from a header string and a data length (data bytes are zeros). */
static const char *make_file(const char *name, const char *header, uint64_t hlen_override, size_t data_len) {
    size_t hlen = strlen(header);
    uint64_t declared = hlen_override ? hlen_override : hlen;
    size_t total = 8 + hlen + data_len;
    unsigned char *buf = calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(declared >> (8 * i));
    memcpy(buf + 8, header, hlen);
    const char *path = scratch_file(name);
    write_bytes(path, buf, total);
    free(buf);
    return path;
}

static void expect_reject(const char *path, const char *needle) {
    SafeTensors st;
    char err[1024] = "";
    ck_assert_int_eq(st_open(&st, path, err, sizeof err), -1);
    ck_assert_msg(strstr(err, path) != NULL, "message does not name the file: %s", err);
    ck_assert_msg(strstr(err, needle) != NULL, "expected \"%s\" in: %s", needle, err);
}

START_TEST(test_malformed) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    SafeTensors st;
    char err[1024];
    ck_assert_msg(st_open(&st, make_file("ok.st", ok, 0, 8), err, sizeof err) == 0, "%s", err);
    st_close(&st);
    /* zero-length and 5-byte files */
    write_bytes(scratch_file("empty.st"), "", 0);
    expect_reject(scratch_file("empty.st"), "truncated");
    write_bytes(scratch_file("five.st"), "abcde", 5);
    expect_reject(scratch_file("five.st"), "truncated");
    /* data cut short: tensor needs 8 bytes, file has 4 */
    expect_reject(make_file("short.st", ok, 0, 4), "past the end");
    /* header length larger than the file */
    expect_reject(make_file("hlen.st", ok, 4000, 8), "truncated");
    /* absurd header length (1 TB) */
    expect_reject(make_file("absurd.st", ok, UINT64_C(1) << 40, 8), "not sane");
    /* offsets past the end */
    expect_reject(make_file("past.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 0, 8), "past the end");
    /* overlapping tensors */
    expect_reject(make_file("overlap.st",
                            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                            0, 12),
                  "overlap");
    /* bad JSON */
    expect_reject(make_file("json.st", "{\"a\":{\"dtype\":\"F32\",", 0, 8), "JSON");
    /* shape/dtype size mismatch: F32 [3] needs 12 bytes, offsets give 8 */
    expect_reject(make_file("mismatch.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8), "need 12");
    /* unknown dtype, negative offsets, non-string metadata */
    expect_reject(make_file("dtype.st", "{\"a\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 0, 2), "dtype");
    expect_reject(make_file("neg.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[-2,0]}}", 0, 2), "data_offsets");
    expect_reject(make_file("meta.st", "{\"__metadata__\":{\"k\":3}}", 0, 0), "__metadata__");
    /* missing file */
    expect_reject(scratch_file("does-not-exist.st"), "cannot open");
}
END_TEST

int main(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_fixture_model);
    tcase_add_test(tc, test_fixture_expected);
    tcase_add_test(tc, test_roundtrip_all_dtypes);
    tcase_add_test(tc, test_malformed);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
