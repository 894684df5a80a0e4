/*
 * data_source.h: where SAE training and evaluation get activation rows, and the batch
 * loader that walks them.
 *
 * A DataSource is an interface (struct of function pointers) over N rows of width d,
 * converted to float32: `read_range` reads consecutive rows (the large sequential reads
 * the loader makes), `read_rows` any rows (initialization, evaluation). Its rows are cut
 * into chunks, runs of consecutive rows that are stored together. Two implementations:
 *  - a safetensors file holding `activations` [N, d] (F32, F16 or BF16), mmapped;
 *    chunks of 1024 rows;
 *  - an activation store (common/store/store.h), one layer of it: rows are tokens,
 *    image-major then token (train.tokens: the patch tokens, all tokens with CLS first,
 *    or CLS only), over the images the store holds (skipped bad images are left out).
 *    Chunks are the store's HDF5 chunks: runs of consecutive images of one file.
 *    train.layer is the ViT block as recorded in the store's `layers` attribute; a
 *    negative value counts from the end of the ViT (saev's convention), resolved with
 *    the depth the store's recorded config implies (model.layers given negative).
 *
 * A BatchLoader turns a source into global batches of B rows, position after position.
 * The stream of an epoch e is the source's chunks in an order drawn from (seed, e) (store
 * order when not shuffling), each chunk's rows in order; the stream is cut into windows
 * of W = shuffle_buffer rows, and the rows of window w are emitted in a permutation
 * drawn from (seed, e, w) (identity when not shuffling). Global position p is therefore
 * a pure function of (seed, p): the loader's whole state is its position, which
 * checkpoints save, and a resumed loader continues bit for bit. Each rank takes a
 * disjoint contiguous share of every global batch (rank r: positions [r·B/size,
 * (r+1)·B/size) of the batch), so the union over ranks is the same batch whatever the
 * rank count.
 *
 * Reading is split across ranks, so the source is read once per epoch, not once per
 * rank: of a window's L stream rows, rank r reads offsets [r·L/size, (r+1)·L/size) (its
 * piece of the window's chunk list, one read_range per chunk piece, in stream order),
 * and an MPI_Alltoallv hands every row to the rank whose batch share holds its emission
 * position. Every rank knows the permutation and all boundaries, so the counts and the
 * row ids need no exchange; only float rows travel (in rows of d floats, so counts stay
 * below 2^31). The split is exact in rows rather than aligned to chunks, so ranks stay
 * balanced even when a chunk is larger than W/size; a chunk cut by a boundary has its
 * rows read once but is touched by two ranks (at most size-1 such cuts per window, like
 * the cuts windows already make). With one rank there is no MPI call at all.
 *
 * Threads and MPI: a prefetch thread (pthread) reads window k+1 and packs it by
 * destination while window k is consumed; the exchange itself runs on the calling
 * thread, inside batch_loader_next, so MPI keeps its MPI_THREAD_FUNNELED level (comm.c)
 * and the prefetch thread never calls MPI. Collectives need every rank to exchange the
 * same windows in the same order at the same point relative to the trainer's own
 * collectives: window k is exchanged in the call that returns the first batch touching
 * it (a rank-independent rule; a rank with no rows in it still takes part), on a
 * duplicate of the loader's communicator made in batch_loader_init, so it can never match the
 * trainer's all-reduces. Memory per rank: the thread's read buffer, two packed windows
 * and two received windows, each about W/size rows. While the loader runs, only its
 * thread touches the source. rows_read counts the rows this rank read for the windows
 * handed over so far (data-dump reports it; the test checks the sum over ranks is the
 * rows consumed, not size times that).
 */
#ifndef SAEV_SAE_DATA_SOURCE_H
#define SAEV_SAE_DATA_SOURCE_H

#include <pthread.h>
#include <stdint.h>

#include "comm.h"
#include "store/store.h"

typedef struct DataSource DataSource;
struct DataSource {
    int64_t n_rows;       // N
    int d;                // row width
    const char *name;     // for messages (file or store path)
    int64_t n_chunks;
    int64_t *chunk_first; // [n_chunks + 1] first row of each chunk; chunk_first[n_chunks] = N
    /* Rows [row0, row0 + n) as float32 into out [n, d]. */
    void (*read_range)(DataSource *src, int64_t row0, int64_t n, float *out);
    void (*close)(DataSource *src);
    void *impl;
};

/* Opens a safetensors file holding `activations` [N, d]; fails naming the file. */
DataSource *data_source_open_safetensors(const char *path);
/* Opens one layer of an activation store. layer: a block number recorded in the store's
 * `layers`, negative from the ViT's end, or CFG_UNSET_INT for the store's only layer;
 * tokens: "patches" | "all" | "cls". Fails (exit 2) naming the store, the problem and
 * the key (section "train" -> train.data, train.layer, train.tokens). */
DataSource *data_source_open_store(const char *section, const char *dir, int64_t layer, const char *tokens);
/* Position in the store's `layers` of a block number (negative from the ViT's end, as
 * train.layer; CFG_UNSET_INT: the store's only layer); *block_out (when not NULL) gets
 * the non-negative block. Fails (exit 2) naming `key`, the store and its blocks. */
int store_layer_index_or_die(const Store *st, int64_t layer, const char *key, int *block_out);
/* A directory is a store, anything else a safetensors file. */
DataSource *data_source_open(const char *section, const char *path, int64_t layer, const char *tokens);
void data_source_close(DataSource *src);
/* Rows ids[0..n) (any order) into out [n, d]; consecutive ids are read as one range. */
void data_source_read_rows(DataSource *src, const int64_t *ids, int n, float *out);

/* A window as read by this rank, packed for the exchange (filled by the prefetch thread). */
typedef struct {
    int64_t k;        // global window index (epoch · windows per epoch + window); -1: none
    int ready;        // filled by the thread, not yet exchanged
    int64_t n_read;   // rows this rank read for it
    float *send;      // [send_cap, d] rows read, grouped by destination rank, each group in emission order
    int *send_count;  // [size] rows for each rank
    int *send_displ;  // [size] first row of each group
    int *recv_count;  // [size] rows coming from each rank
    int *recv_displ;  // [size]
    int64_t n;        // this rank's rows of the window
    int64_t *ids;     // [cap] their row ids, in emission order
    int64_t *from;    // [cap] row of the received rows that is the i-th emitted
} LoaderRead;

/* This rank's rows of a window after the exchange (owned by the calling thread). */
typedef struct {
    int64_t k;        // global window index; -1: empty
    int64_t n;        // this rank's rows in the window
    float *rows;      // [recv_cap, d] as received, grouped by sending rank
    int64_t *ids;     // [cap] row ids in emission order
    int64_t *from;    // [cap] row of `rows` that is the i-th emitted
} LoaderWindow;

typedef struct {
    DataSource *src;
    int shuffle;
    uint64_t seed;
    int64_t batch;        // global batch size B
    int64_t window;       // W: rows shuffled together (<= N)
    int rank, size;       // this rank of the world
    int64_t lo, hi;       // this rank's share [lo, hi) of every global batch
    int64_t position;     // global rows consumed so far (a multiple of B)
    int64_t *ids;         // [hi - lo] row ids of the rows the last batch_loader_next returned
    int64_t cap;          // this rank's emitted rows a window can hold
    int64_t read_cap;     // rows of this rank's piece of a window (at most ceil(W/size))
    int64_t send_cap, recv_cap; // rows of a packed / received window buffer
    LoaderRead read[2];   // read[k % 2]: window k as read (thread -> caller)
    LoaderWindow win[2];  // win[k % 2]: window k after the exchange
    int64_t next_x;       // next window to exchange
    int64_t rows_read;    // rows this rank read for the windows exchanged so far
    void *mpi;            // the loader's duplicate communicator and row datatype (size > 1)
    /* prefetch thread */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, stop;
    int64_t first_k;      // window the thread starts with
} BatchLoader;

/* A loader at global position `position` (0, or a checkpoint's) for this rank of comm's
 * ranks; starts the prefetch thread. Collective when size > 1 (every rank calls it,
 * as they call batch_loader_next and batch_loader_free, in the same order). shuffle_buffer is W (capped at N). */
void batch_loader_init(BatchLoader *l, DataSource *src, const Comm *comm, int64_t global_batch, int shuffle,
                       int64_t shuffle_buffer, uint64_t seed, int64_t position);
/* Stops the thread and frees (collective when size > 1: it frees the loader's
 * communicator); the source is usable again afterwards. */
void batch_loader_free(BatchLoader *l);
/* Rows rank `rank` of `size` takes from each global batch. */
int batch_loader_local_rows(int64_t global_batch, int rank, int size);
/* Reads this rank's share of the next global batch into out [local, d] (row ids in
 * l->ids) and advances position by B. Returns the local row count. Collective when
 * size > 1: it exchanges the windows this batch is the first to touch. */
int batch_loader_next(BatchLoader *l, float *out);

#endif
