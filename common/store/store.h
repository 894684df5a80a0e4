/*
 * store.h: the activation store, a directory of HDF5 files holding a ViT's residual-stream
 * activations, written collectively by many MPI ranks and read by training.
 *
 * Layout. The store directory holds acts-000000.h5, acts-000001.h5, ...; file f holds
 * images [f*images_per_file, min(n_images, (f+1)*images_per_file)) so that no file grows
 * without bound (images_per_file = 0 means one file). Every file has, for its n_f images:
 *   activations  [n_f, layers, tokens, d_model]  float32 | float16 | bfloat16
 *                chunked [c, 1, tokens, d_model] (c images of one layer, ~4 MiB), so a
 *                layer of many images is read as a few large contiguous chunks
 *   image_index  int64 [n_f]   the image's global index in the data set
 *   label        int64 [n_f]   class label (-1 when the data set has none)
 *   patch_labels uint8 [n_f, patches]   per-patch labels (segmentation sets only)
 *   status       uint8 [n_f]   0 = not yet written, 1 = written, 2 = skipped (bad image)
 *   skip_reason  char[128] [n_f]  why an image was skipped ("" otherwise)
 *   checksum     uint32 [n_f, layers]  store_checksum (Fletcher-32) of the stored bytes of
 *                each image's slice of each layer; 0 for images not written
 * and the same root attributes (VL UTF-8 strings and int64s): model_family, model,
 * checkpoint_digest, layers (resolved, non-negative block indices), tokens, d_model,
 * has_cls, patches, token_layout (text: CLS first, then patches in raster order,
 * registers never stored), dtype, n_images, images_per_file, patch_labels, preprocessing,
 * dataset, saev_version, config (the resolved YAML), file_index, n_files, first_image,
 * n_images_in_file, and `complete` = 1, created only after everything else is on disk.
 *
 * dtypes: float16 is the IEEE half type (h5py: float16). bfloat16 is a committed HDF5
 * float type named "/bfloat16" (sign bit 15, 8-bit exponent at bit 7, 7-bit mantissa,
 * bias 127); h5dump shows it by name and h5py reads it as float32 exactly.
 *
 * Crash safety and resume. All datasets are allocated when the file is created
 * (H5D_ALLOC_TIME_EARLY), the file is closed once and reopened, so afterwards writes only
 * touch raw data and never file metadata: killing a rank (even kill -9) leaves readable
 * files. Each batch writes activations and labels first and the status bytes last, so an
 * image is marked written only once its data is in the file. Reopening a store reads
 * `status`; store_pending lists what is left, and a rerun (with any number of ranks)
 * writes exactly those images, ending with the same bytes as an uninterrupted run.
 * Reopening with a different model, layer list, dtype, data set, ... is refused, naming
 * the setting (store_meta_compare). Creation writes "*.h5.tmp" files and renames them,
 * file 0 last, so a store directory never holds half-created files under final names.
 *
 * Writers are collective: given a communicator (comm.h), every rank of it must call
 * store_open_write, store_write (the same number of times; a rank with nothing left
 * passes n = 0) and store_finish, and the files are written through MPI-IO on it.
 * Without one (NULL) the store is written by one process through the sec2 driver
 * (import-saev). Readers never need MPI.
 *
 * Silent corruption. Every written image carries a checksum per layer, written with its
 * data (collectively, like the labels) before its status. Every read of activations
 * checks the checksums of the written images it covers: a flipped byte ends the job
 * naming the file, image, layer and HDF5 chunk, instead of feeding a wrong activation to
 * training. store_verify reads a whole store and reports every bad slice. Stores written
 * before checksums existed have no `checksum` dataset: they open and read unchecked
 * (has_checksums = 0; `saev inspect` says so).
 *
 * Readers check what a file claims before trusting it: attributes in range, every
 * dataset present with the shape and type the attributes imply, status values 0..2, the
 * file long enough for its records. A malformed store gives a message naming the file
 * and the problem, never a crash or an allocation sized by a corrupt number.
 *
 * Fault injection (fault.h): SAEV_FAULT=store.kill_after_writes=K@R makes rank R kill
 * itself (SIGKILL) inside its (K+1)-th store_write, after the activations are written and
 * before their status, the worst moment for resume.
 */
#ifndef SAEV_STORE_H
#define SAEV_STORE_H

#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>

#include "comm.h"

typedef enum { STORE_F32 = 0, STORE_F16 = 1, STORE_BF16 = 2 } StoreDtype;

enum { STORE_PENDING = 0, STORE_WRITTEN = 1, STORE_SKIPPED = 2 };
#define STORE_REASON_LEN 128 /* bytes of skip_reason per image, NUL-padded */

/* What a store holds. Identity fields must match to resume into an existing store. */
typedef struct {
    /* identity (store_meta_compare) */
    char *model_family;      /* clip | dinov2 | siglip | ... (saev's `family`) */
    char *model;             /* checkpoint name or path (saev's `ckpt`) */
    char *checkpoint_digest; /* digest of the weights, e.g. "sha256:..." */
    int n_layers;
    int *layers;             /* [n_layers] resolved block indices, >= 0 */
    int n_tokens;            /* stored tokens per image = has_cls + n_patches */
    int has_cls;             /* 1: token 0 is CLS */
    int n_patches;           /* patch tokens, raster (row-major) order */
    int d_model;
    StoreDtype dtype;
    int64_t n_images;
    int64_t images_per_file; /* 0: all in one file */
    int has_patch_labels;
    char *preprocessing;     /* text description of the pixel pipeline */
    char *dataset;           /* text description of the data set (root path, split) */
    /* provenance (stored, not compared) */
    char *saev_version;
    char *config_yaml;       /* resolved config as YAML */
} StoreMeta;

typedef struct {
    StoreMeta meta;
    char *dir;
    int writable;
    const Comm *comm;        /* writers: files opened through MPI-IO on comm->mpi; NULL: one process, and readers */
    int complete;            /* every file carries complete = 1 */
    int n_files;
    int64_t *file_first;     /* [n_files + 1] first image of each file; last = n_images */
    hid_t *file;             /* [n_files] */
    hid_t *d_acts;           /* [n_files] activations */
    hid_t *d_index, *d_label, *d_status, *d_reason, *d_plabels; /* [n_files]; d_plabels only with patch labels (else -1) */
    hid_t *d_checksum;       /* [n_files] checksum datasets; -1 in stores from before checksums */
    int n_open;              /* files opened so far (close_files closes these) */
    int has_checksums;       /* 1: every file has a checksum dataset, and reads verify it */
    uint32_t *checksum;      /* [n_images, layers] stored checksums (readers with has_checksums) */
    hid_t dxpl;              /* collective transfer with a comm, default otherwise */
    uint8_t *status;         /* [n_images] as read at open, updated by this rank's writes */
    int64_t *image_index;    /* [n_images] (readers) */
    int64_t *label;          /* [n_images] (readers) */
    void *conv;              /* scratch for dtype conversion */
    size_t conv_bytes;
    int64_t n_writes;        /* store_write calls on this rank (SAEV_FAULT store.kill_after_writes, fault.h) */
} Store;

size_t store_dtype_size(StoreDtype t);
/* Fletcher-32 of nbytes at data, over little-endian 16-bit words (an odd last byte is a
 * word of its own), both sums mod 65535: the checksum stored per image and layer. */
uint32_t store_checksum(const void *data, size_t nbytes);
const char *store_dtype_name(StoreDtype t);
/* "float32" | "float16" | "bfloat16" -> 0 and *out, else -1. */
int store_dtype_parse(const char *name, StoreDtype *out);

/* Names the first identity field that differs ("model", "layers", ...) and describes the
 * two values in msg; returns NULL when a and b are compatible. */
const char *store_meta_compare(const StoreMeta *stored, const StoreMeta *wanted, char *msg, size_t msglen);
void store_meta_free(StoreMeta *m);
/* The text stored as the token_layout attribute. */
void store_token_layout(const StoreMeta *m, char *buf, size_t len);

/* ---- writing (collective over comm when one is given) ---- */

/* Creates the store in dir (making dir), or with resume reopens an existing one after
 * checking its identity; without resume an existing store is an error. Fails with a
 * message naming the directory and the differing setting. */
Store *store_open_write(const char *dir, const StoreMeta *meta, int resume, const Comm *comm);
/* Images not yet written or skipped, ascending; returns the count, *out malloc'd. The
 * same on every rank. */
int64_t store_pending(const Store *s, int64_t **out);
/* One rank's share of the pending images, as every writer of a store deals them (the
 * activations stage, the store self-test and the benchmark). Work goes in whole global
 * batches (images [k*B, (k+1)*B)), balanced contiguous runs of batches per rank, so an
 * image is computed in the same batch whatever the number of ranks (1 and N ranks give
 * bit-identical stores). A rank's images form contiguous runs (a resumed store has
 * holes); each run is written in pieces of at most B images, one store_write each.
 * store_write is collective: every rank calls it n_writes_all times, the ranks with
 * fewer pieces padding with empty writes. */
typedef struct {
    int64_t n_pending;     // pending images on all ranks
    int64_t *images;       // [n_images] this rank's pending images, ascending
    int64_t n_images;
    int64_t *run_start;    // [n_runs + 1] run r is images[run_start[r] .. run_start[r+1]), consecutive images
    int64_t n_runs;
    int64_t n_writes;      // this rank's pieces: sum over runs of ceil(run length / B)
    int64_t n_writes_all;  // the most pieces of any rank: store_write calls every rank makes
} StorePlan;
/* The plan of rank `rank` of `size` for batches of batch_size; the same inputs give the
 * same plan on every rank, without communication. */
void store_plan(const Store *s, int rank, int size, int64_t batch_size, StorePlan *plan);
/* Piece w (0 <= w < n_writes_all) of the plan: images[*first .. *first + *n); n = 0 for
 * the padding writes past this rank's n_writes. The image loader cuts a run into the same
 * pieces (batch b of a run holds its images b*B ...). */
void store_plan_piece(const StorePlan *plan, int64_t batch_size, int64_t w, int64_t *first, int64_t *n);
void store_plan_free(StorePlan *plan);
/* Writes n images (idx ascending, global store positions). acts: [n, layers, tokens,
 * d_model] float32, converted to the store dtype; image_index, label: [n] (NULL: idx and
 * -1); patch_labels: [n, patches] or NULL; skip_reason: [n] with NULL for good images,
 * or NULL when none is skipped (a skipped image's activations are not written). */
void store_write(Store *s, int64_t n, const int64_t *idx, const float *acts, const int64_t *image_index,
                 const int64_t *label, const uint8_t *patch_labels, const char *const *skip_reason);
/* Same, with acts already in the store dtype (raw bytes [n, layers, tokens, d_model]). */
void store_write_raw(Store *s, int64_t n, const int64_t *idx, const void *acts, const int64_t *image_index,
                     const int64_t *label, const uint8_t *patch_labels, const char *const *skip_reason);
/* Flushes; when no image is pending on any rank, marks every file complete. Returns 1 if
 * the store is complete. Then closes the store. */
int store_finish(Store *s);

/* ---- reading (one process, no MPI) ---- */

/* Opens a store directory (or one of its .h5 files' directory). NULL and err on failure. */
Store *store_open_read(const char *dir, char *err, size_t errlen);
/* Rows of one layer: images [img0, img0+n_img), tokens [tok0, tok0+n_tok), as float32
 * out[n_img * n_tok, d_model] (image-major, then token). */
void store_read_layer(Store *s, int layer_idx, int64_t img0, int64_t n_img, int tok0, int n_tok, float *out);
/* Whole images as float32 out[n, layers, tokens, d_model]. */
void store_read_images(Store *s, int64_t img0, int64_t n, float *out);
/* Raw stored bytes of whole images (store dtype), out[n, layers, tokens, d_model]. */
void store_read_images_raw(Store *s, int64_t img0, int64_t n, void *out);
/* Patch labels out[n, patches] (store must have them). */
void store_read_patch_labels(Store *s, int64_t img0, int64_t n, uint8_t *out);
/* Skip reason of image i into buf ("" when not skipped). */
void store_read_skip_reason(Store *s, int64_t i, char *buf, size_t len);
void store_close(Store *s);
/* Reads every activation of the store, never ending the job: each image slice of each
 * layer that cannot be read or whose checksum differs is reported on `report` (when not
 * NULL) as "bad: FILE: image I (row R of the file), layer L, chunk [...]: why". Returns
 * the number of bad slices. Without checksums (s->has_checksums = 0) only readability is
 * checked. */
int64_t store_verify(Store *s, FILE *report);

/* Prints shapes, dtypes, attributes and progress of a store directory or one of its
 * .h5 files. Returns 0, or 1 with a message on stderr. */
int store_describe(const char *path, FILE *out);
/* 1 if path looks like a store (a directory holding acts-000000.h5, or a .h5 file). */
int store_path_is_store(const char *path);

#endif
