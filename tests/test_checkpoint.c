/*
 * test_checkpoint.c: what an SAE checkpoint's metadata may say about the activation.
 *  - every activation name round-trips through the one name table (sae_activation.c)
 *    and through a checkpoint's saev_sae_config JSON;
 *  - a checkpoint whose activation name is unknown ("jumprelu", as a newer saev might
 *    write) is refused: sae_config_from_json names the activation, and
 *    sae_checkpoint_load ends the program with status 2 and a message naming the file
 *    and the activation (it used to be read as batch-top-k);
 *  - a Matryoshka SAE that samples its prefixes (train_config_sae's config: prefixes
 *    [d_sae], n_prefixes draws per step) round-trips through its JSON; the reader used to
 *    refuse the [d_sae, 0, 0] the writer leaves in matryoshka_prefixes, so `saev evaluate`
 *    could not load such a checkpoint.
 */
#include <check.h>
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "safetensors.h"
#include "sae/checkpoint.h"
#include "sae/sae.h"

enum { D = 4, S = 8 };

/* The JSON of a valid d=4, S=8 top-k SAE with its activation renamed to `name`. */
static char *config_json_named(const char *name) {
    SaeConfig c;
    sae_config_default(&c, D, S);
    c.activation = SAE_TOPK;
    c.k = 2;
    char *json = sae_config_to_json(&c, 1.0f);
    const char *key = "\"activation\":\"top-k\"";
    char *at = strstr(json, key);
    ck_assert_msg(at != NULL, "sae_config_to_json no longer writes %s: %s", key, json);
    char *out = malloc(strlen(json) + strlen(name) + 32);
    sprintf(out, "%.*s\"activation\":\"%s\"%s", (int)(at - json), json, name, at + strlen(key));
    free(json);
    return out;
}

/* A checkpoint file with zero weights and the given config metadata. */
static void write_checkpoint(const char *path, const char *config_json) {
    static float w_enc[D * S], b_enc[S], w_dec[S * D], b_dec[D];
    int64_t sh_enc[2] = {D, S}, sh_s[1] = {S}, sh_dec[2] = {S, D}, sh_d[1] = {D};
    StWriter w;
    st_writer_init(&w);
    st_writer_add(&w, "W_enc", ST_F32, 2, sh_enc, w_enc);
    st_writer_add(&w, "b_enc", ST_F32, 1, sh_s, b_enc);
    st_writer_add(&w, "W_dec", ST_F32, 2, sh_dec, w_dec);
    st_writer_add(&w, "b_dec", ST_F32, 1, sh_d, b_dec);
    st_writer_meta(&w, "format", "saev-c sae 1");
    st_writer_meta(&w, "saev_sae_config", config_json);
    st_writer_write_or_die(&w, path);
    st_writer_free(&w);
}

START_TEST(test_names_round_trip) {
    SaeActivation all[] = {SAE_RELU, SAE_TOPK, SAE_BATCH_TOPK};
    for (int i = 0; i < 3; i++) {
        SaeActivation back;
        ck_assert_int_eq(sae_activation_parse(sae_activation_name(all[i]), &back), 0);
        ck_assert_int_eq(back, all[i]);
        char *json = config_json_named(sae_activation_name(all[i]));
        SaeConfig c;
        float scale;
        const char *bad = sae_config_from_json(json, &c, &scale);
        ck_assert_msg(bad == NULL, "%s: %s", sae_activation_name(all[i]), bad);
        ck_assert_int_eq(c.activation, all[i]);
        free(json);
    }
    SaeActivation a;
    ck_assert_int_eq(sae_activation_parse("jumprelu", &a), -1);
    ck_assert_int_eq(sae_activation_parse("", &a), -1);
}
END_TEST

START_TEST(test_unknown_activation_refused) {
    char *json = config_json_named("jumprelu");
    SaeConfig c;
    float scale;
    const char *bad = sae_config_from_json(json, &c, &scale);
    ck_assert_msg(bad != NULL, "an unknown activation was accepted");
    ck_assert_msg(strstr(bad, "\"jumprelu\""), "message does not name the activation: %s", bad);

    const char *path = scratch_file("jumprelu.safetensors"), *log = scratch_file("load.err");
    write_checkpoint(path, json);
    free(json);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (!freopen(log, "w", stderr)) _exit(99);
        Sae sae;
        sae_checkpoint_load(&sae, path, 16);
        _exit(0); /* loaded: the check below fails */
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    char *text = read_file_or_die(log, NULL);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2, "sae_checkpoint_load: status %d, 2 expected; stderr: %s", status, text);
    ck_assert_msg(strstr(text, path), "message does not name the file: %s", text);
    ck_assert_msg(strstr(text, "\"jumprelu\""), "message does not name the activation: %s", text);
    free(text);
}
END_TEST

START_TEST(test_sampled_prefixes_round_trip) {
    SaeConfig c;
    sae_config_default(&c, D, S);
    c.activation = SAE_RELU; /* as train_config_sae fills a sampling Matryoshka SAE */
    c.k = 0;
    c.sample_prefixes = 1;
    c.n_prefixes = 3;
    c.prefixes[0] = S;
    char *json = sae_config_to_json(&c, 1.0f);
    SaeConfig back;
    float scale;
    const char *bad = sae_config_from_json(json, &back, &scale);
    ck_assert_msg(bad == NULL, "a sampling Matryoshka SAE's own JSON is refused: %s (%s)", bad, json);
    ck_assert_int_eq(back.sample_prefixes, 1);
    ck_assert_int_eq(back.n_prefixes, 3);
    ck_assert_int_eq(back.prefixes[0], S);
    ck_assert_ptr_null(sae_config_check(&back));
    free(json);
}
END_TEST

int main(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("activation");
    tcase_add_test(tc, test_names_round_trip);
    tcase_add_test(tc, test_unknown_activation_refused);
    tcase_add_test(tc, test_sampled_prefixes_round_trip);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
