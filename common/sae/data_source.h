/*
 * data_source.h: where SAE training and evaluation get activation rows.
 *
 * A DataSource is an interface (struct of function pointers): `read_rows` fetches rows by
 * global index into float32. The safetensors implementation here reads an `activations`
 * [N, d] tensor (F32, F16 or BF16) from an mmapped file; an activation-store (HDF5)
 * reader provides the same interface.
 *
 * A BatchLoader walks a source in global batches: in file order, or shuffled (a seeded
 * permutation per epoch). Each rank takes a disjoint contiguous share of every global
 * batch (rank r: rows [r·N/size, (r+1)·N/size) of the batch), so the union over ranks
 * is the whole batch whatever the rank count. Its whole state is `position` (rows
 * consumed), which checkpoints save.
 */
#ifndef SAEV_SAE_DATA_SOURCE_H
#define SAEV_SAE_DATA_SOURCE_H

#include <stdint.h>

typedef struct DataSource DataSource;
struct DataSource {
    int64_t n_rows;  // N
    int d;           // row width
    const char *name; // for messages (file path)
    /* rows[i] = row ids[i] for i < n, as float32, into out [n, d]. */
    void (*read_rows)(DataSource *src, const int64_t *ids, int n, float *out);
    void (*close)(DataSource *src);
    void *impl;
};

/* Opens a safetensors file holding `activations` [N, d]; fails naming the file. */
DataSource *data_source_open_safetensors(const char *path);
/* Opens by path: safetensors files now; stores (directories) through the store reader. */
DataSource *data_source_open(const char *path, int layer);
void data_source_close(DataSource *src);

typedef struct {
    DataSource *src;
    int shuffle;
    uint64_t seed;
    int64_t batch;      // global batch size
    int64_t position;   // global rows consumed so far
    int64_t *perm;      // [n_rows] permutation of the current epoch (shuffle)
    int64_t perm_epoch; // epoch the permutation belongs to (-1: none)
    int64_t *ids;       // [local rows] scratch
} BatchLoader;

void batch_loader_init(BatchLoader *l, DataSource *src, int64_t global_batch, int shuffle, uint64_t seed);
void batch_loader_free(BatchLoader *l);
/* Rows this rank takes from each global batch, and the largest share over ranks. */
int batch_loader_local_rows(int64_t global_batch, int rank, int size);
/* Reads this rank's share of the next global batch into out [local, d] and advances. */
int batch_loader_next(BatchLoader *l, float *out);

#endif
