/*
 * stage_data_dump.c: `saev-worker data-dump CONFIG [--set ...] --batches N --out PREFIX
 * [--from S]`: runs the training loader of the config's train: section (train.data,
 * layer, tokens, shuffle, shuffle_buffer, batch_size, seed) for N global batches starting
 * at batch S (position S·batch_size, as a resumed run does), and writes what this rank
 * received to PREFIX.rank<r>.safetensors: `ids` I64 [N, local] (row ids), `rows` F32
 * [N, local, d] and `rows_read` I64 [1] (rows this rank read from the source for the
 * windows those batches touched). Tests check these against the store's closed form,
 * across rank counts, and that the ranks together read each row once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm.h"
#include "safetensors.h"
#include "saev_config.h"
#include "sae/data_source.h"
#include "stages.h"

int stage_data_dump(int argc, char **argv) {
    static const char *const value_flags[] = {"--batches", "--out", "--from", NULL};
    CfgArgs args;
    cfg_args_parse_or_die(argc, argv, value_flags, &args);
    long long n_batches = -1, from = 0;
    const char *out = NULL;
    for (int i = 1; i < args.argc; i++) {
        if (i + 1 >= args.argc) saev_usage_fail("data-dump: %s needs a value", args.argv[i]);
        if (!strcmp(args.argv[i], "--batches")) n_batches = atoll(args.argv[++i]);
        else if (!strcmp(args.argv[i], "--from")) from = atoll(args.argv[++i]);
        else if (!strcmp(args.argv[i], "--out")) out = args.argv[++i];
        else saev_usage_fail("data-dump: unknown argument \"%s\"", args.argv[i]);
    }
    if (n_batches < 1 || from < 0 || !out) saev_usage_fail("data-dump: --batches N (>= 1) and --out PREFIX are required");
    SaevConfig *cfgs;
    int K = saev_config_load_or_die(&args, &cfgs);
    const TrainConfig *c = &cfgs[0].train;
    if (!c->data) saev_usage_fail("data-dump: train.data is required");
    DataSource *src = data_source_open("train", c->data, c->layer, c->tokens);
    const Comm *world = comm_world();
    int local = batch_loader_local_rows(c->batch_size, world->rank, world->size);
    BatchLoader l;
    batch_loader_init(&l, src, world, c->batch_size, c->shuffle, c->shuffle_buffer, (uint64_t)c->seed, from * c->batch_size);
    float *rows = mallocCheck((size_t)n_batches * local * src->d * sizeof(float));
    int64_t *ids = mallocCheck((size_t)n_batches * local * sizeof(int64_t));
    for (long long b = 0; b < n_batches; b++) {
        batch_loader_next(&l, rows + (size_t)b * local * src->d);
        memcpy(ids + (size_t)b * local, l.ids, (size_t)local * sizeof(int64_t));
    }
    int64_t rows_read = l.rows_read;
    batch_loader_free(&l);
    char path[4096];
    snprintf(path, sizeof path, "%s.rank%d.safetensors", out, world->rank);
    StWriter w;
    st_writer_init(&w);
    int64_t shape_ids[2] = {n_batches, local}, shape_rows[3] = {n_batches, local, src->d}, shape_one[1] = {1};
    st_writer_add(&w, "ids", ST_I64, 2, shape_ids, ids);
    st_writer_add(&w, "rows", ST_F32, 3, shape_rows, rows);
    st_writer_add(&w, "rows_read", ST_I64, 1, shape_one, &rows_read);
    st_writer_write_or_die(&w, path);
    st_writer_free(&w);
    free(rows);
    free(ids);
    data_source_close(src);
    saev_config_free(cfgs, K);
    cfg_args_free(&args);
    return 0;
}
