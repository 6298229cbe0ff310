/* Shared by the compiled parts of pipevault.format._accel (_accel.c, _accel_fields.c,
 * _accel_records.c). */
#ifndef PIPEVAULT_ACCEL_H
#define PIPEVAULT_ACCEL_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Sizes and codes of the format (docs/format.md sections 2, 3 and 5; _superblock.py, _records.py). */
#define CHECKSUM_OFFSET 56
#define HEADER_LEN 64
#define RECORD_HEADER_LEN 8
#define TAG_LEN 24
#define TYPE_CHUNK_HEADER 0x05
#define TYPE_DATA 0x06
#define TYPE_CHUNK_FOOTER 0x07
#define CHUNK_HEADER_LEN 96
#define CHUNK_FOOTER_LEN 48
#define VERSION_MAJOR 1
#define VERSION_MINOR 1
#define MIN_SIZE_LOG2 16
#define MAX_SIZE_LOG2 24
#define KNOWN_REQUIRED 0x0F

static const unsigned char ACCEL_MAGIC[8] = {0x89, 'P', 'V', 'S', 'B', '\r', '\n', 0x1a};

static inline uint32_t
accel_load_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t
accel_load_u64le(const unsigned char *p)
{
    return (uint64_t)accel_load_u32le(p) | ((uint64_t)accel_load_u32le(p + 4) << 32);
}

static inline void
accel_store_u32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void
accel_store_u64le(unsigned char *p, uint64_t v)
{
    accel_store_u32le(p, (uint32_t)v);
    accel_store_u32le(p + 4, (uint32_t)(v >> 32));
}

/* _accel_fields.c: field lists (docs/format.md section 4). */
int accel_fields_init(void);
extern PyMethodDef accel_fields_methods[];

/* _accel_records.c: record walk, chunk headers and footers, frozen dataclasses (also called
 * from _accel_walk.c with the arguments of their Python signatures). */
int accel_records_init(void);
extern PyMethodDef accel_records_methods[];
PyObject *accel_chunk_header(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *accel_chunk_footer(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *accel_make(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* _accel.c: xxh3-64 of buf[:56] and of buf[start:end] without the stored bytes of its DATA
 * records (the superblock checksum, docs/format.md section 2). */
uint64_t accel_superblock_checksum(const unsigned char *buf, Py_ssize_t start, Py_ssize_t end);

/* _accel_plain.c: whole untransformed chunks. */
extern PyMethodDef accel_plain_methods[];

/* _accel_codec.c: compressed chunks' stored bytes to plaintext (unpack_stored). */
extern PyMethodDef accel_codec_methods[];
PyObject *accel_unpack_stored(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* _accel_frame.c: a small object's records framed in one call. */
extern PyMethodDef accel_frame_methods[];

/* _accel_walk.c: superblocks of compressed chunks' records read in one call. */
extern PyMethodDef accel_walk_methods[];

#endif
