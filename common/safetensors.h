/*
 * safetensors.h: reader and writer for the safetensors format.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "string", ...}}, then the raw little-endian data; offsets are
 * relative to the end of the header. The reader mmaps the file and checks everything
 * before handing out pointers: header length sane and inside the file, JSON valid,
 * dtype known, offsets 64-bit, ordered, inside the data, not overlapping, and
 * (end - begin) == numel * dtype size. A malformed file gives a message that names the
 * file and the problem.
 *
 * The writer collects tensors (pointers, not copies) and metadata, writes to
 * "<path>.tmp" and renames, so a reader never sees a half-written file.
 */
#ifndef SAEV_SAFETENSORS_H
#define SAEV_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef enum { ST_F32 = 0, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_U8, ST_N_DTYPES } StDtype;

typedef struct {
    char *name;                 /* tensor name */
    StDtype dtype;
    int ndim;                   /* 0..ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS]; /* [ndim] */
    int64_t numel;              /* product of shape (1 for a scalar) */
    uint64_t nbytes;            /* numel * dtype size */
    const void *data;           /* into the mmap; little-endian, possibly unaligned for >1-byte types */
} StTensor;

typedef struct {
    char *path;
    void *map;            /* whole-file mmap */
    size_t map_size;      /* file size in bytes */
    StTensor *tensors;    /* [n_tensors] in file order of data offsets */
    int n_tensors;
    char **meta_keys;     /* [n_meta] */
    char **meta_values;   /* [n_meta] */
    int n_meta;
} SafeTensors;

size_t st_dtype_size(StDtype d);
const char *st_dtype_name(StDtype d);
int st_dtype_from_name(const char *name, StDtype *out); /* 0 ok, -1 unknown */

/* Open and validate. Returns 0, or -1 with a message "<path>: <problem>" in err. */
int st_open(SafeTensors *st, const char *path, char *err, size_t errlen);
/* Same, but a failure ends the job with that message. */
void st_open_or_die(SafeTensors *st, const char *path);
void st_close(SafeTensors *st);

const StTensor *st_find(const SafeTensors *st, const char *name); /* NULL if absent */
/* The tensor or a fatal error naming the file and tensor. */
const StTensor *st_require(const SafeTensors *st, const char *name);
const char *st_meta(const SafeTensors *st, const char *key); /* NULL if absent */

/* Convert any numeric tensor to float32 into out[numel]. */
void st_to_f32(const StTensor *t, float *out);
/* malloc'd float copy of a required tensor; checks the shape when want_shape != NULL. */
float *st_load_f32(const SafeTensors *st, const char *name, int ndim, const int64_t *want_shape);

typedef struct {
    const char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; /* caller keeps it alive until st_writer_write */
} StWriterTensor;

typedef struct {
    StWriterTensor *tensors; /* [n] */
    int n, cap;
    char **meta_keys, **meta_values; /* [n_meta] */
    int n_meta, cap_meta;
} StWriter;

void st_writer_init(StWriter *w);
void st_writer_add(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape, const void *data);
void st_writer_meta(StWriter *w, const char *key, const char *value);
/* Returns 0, or -1 with the problem in err (nothing left behind). */
int st_writer_write(const StWriter *w, const char *path, char *err, size_t errlen);
void st_writer_write_or_die(const StWriter *w, const char *path);
void st_writer_free(StWriter *w);

#endif
