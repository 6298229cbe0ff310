/* frame_whole: a small object's records (archive header, chunk header, data, chunk footer) in
 * one call, for sessions without keys writing format 1.1 chunks.
 *
 * The readable specification is pipevault/format/_framed.py (frame_whole's Python path, with
 * ChunkEncoder.transform in _chunk.py); a backup frames every small file, and the Python
 * around the hash, the compressor and the packing cost more than they do. The compressor and
 * the dedup hash are the caller's own callables (python-zstandard or lz4, hashlib's SHA-256),
 * so the bytes are those of the Python path whatever library versions are installed; only
 * the content hash (libxxhash's xxh3-128) and the packing are done here. The GIL is held
 * throughout and nothing is kept between calls. Tests compare both paths byte for byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "_accel.h"

#define TYPE_ARCHIVE_HEADER 0x03
#define COMPRESSION_NONE 0
#define COMPRESSION_LZ4 1
#define COMPRESSION_ZSTD 2
#define FLAG_RAW_FALLBACK 1
#define FLAG_HAS_DEDUP_HASH 4
#define FLAG_STORED_HASH 8
#define REQUIRED_LZ4 1
#define REQUIRED_ZSTD 2
#define REQUIRED_STORED_HASH 8
#define MAX_CHUNK ((Py_ssize_t)64 << 20)

static unsigned char *
put_record_header(unsigned char *p, unsigned char type, uint32_t length)
{
    p[0] = type;
    p[1] = 0;
    p[2] = p[3] = 0;
    accel_store_u32le(p + 4, length);
    return p + RECORD_HEADER_LEN;
}

/* The dedup hash of plain (hasher(plain).digest()), and whether this encoder gave it out
 * before (repeats: the set of those it did, cleared when it holds repeats_max). Returns a
 * new reference or NULL with an exception set. */
static PyObject *
dedup_hash(PyObject *hasher, PyObject *plain, PyObject *repeats, Py_ssize_t repeats_max, int *repeat)
{
    PyObject *h = PyObject_CallOneArg(hasher, plain);
    if (h == NULL)
        return NULL;
    PyObject *digest = PyObject_CallMethod(h, "digest", NULL);
    Py_DECREF(h);
    if (digest == NULL)
        return NULL;
    if (!PyBytes_Check(digest) || PyBytes_GET_SIZE(digest) != 32) {
        PyErr_SetString(PyExc_TypeError, "the dedup hash must give 32 bytes");
        Py_DECREF(digest);
        return NULL;
    }
    *repeat = 0;
    if (repeats != Py_None) {
        int seen = PySet_Contains(repeats, digest);
        if (seen < 0 || (!seen && PySet_GET_SIZE(repeats) >= repeats_max && PySet_Clear(repeats) < 0)
                || (!seen && PySet_Add(repeats, digest) < 0)) {
            Py_DECREF(digest);
            return NULL;
        }
        *repeat = seen;
    }
    return digest;
}

PyDoc_STRVAR(frame_whole_doc,
"frame_whole(object_index, header_body, plain, compression, level, packer, hasher, algo,\n"
"            repeats, repeats_max) -> (records, stored_len, required, dedup_hash) or None\n\n"
"The records _framed.frame_whole packs for an object whose data ``plain`` (a bytes-like\n"
"object, read during the call) is one chunk, in a session without keys: ``compression`` and\n"
"``level`` are the selector's choice, ``packer`` compresses (None for no compression),\n"
"``hasher`` makes the dedup hash (None: no dedup hash) and ``algo`` is its dedup_algo code,\n"
"``repeats`` is the set of dedup hashes the encoder gave out before (None: it keeps none; a\n"
"repeat is not compressed).\n"
"None when the arguments are outside what this path packs (the caller then takes the\n"
"Python path, which raises the errors).");

static PyObject *
accel_frame_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "frame_whole takes 10 arguments");
        return NULL;
    }
    /* A number out of range (negative, huge) declines: the Python path raises its own error. */
    unsigned long long index = PyLong_AsUnsignedLongLong(args[0]);
    if (index == (unsigned long long)-1 && PyErr_Occurred())
        goto overflow;
    long compression = PyLong_AsLong(args[3]);
    if (compression == -1 && PyErr_Occurred())
        goto overflow;
    long level = PyLong_AsLong(args[4]);
    if (level == -1 && PyErr_Occurred())
        goto overflow;
    long dedup_algo = PyLong_AsLong(args[7]);
    if (dedup_algo == -1 && PyErr_Occurred())
        goto overflow;
    Py_ssize_t repeats_max = PyLong_AsSsize_t(args[9]);
    if (repeats_max == -1 && PyErr_Occurred())
        goto overflow;
    PyObject *plain_obj = args[2], *packer = args[5], *hasher = args[6], *repeats = args[8];
    if (index > 0xFFFFFFFFULL || compression < COMPRESSION_NONE || compression > COMPRESSION_ZSTD
            || level < -128 || level > 127 || dedup_algo < 1 || dedup_algo > 255
            || (compression != COMPRESSION_NONE && packer == Py_None)
            || (repeats != Py_None && !PySet_Check(repeats)))
        Py_RETURN_NONE;
    Py_buffer header, plain;
    if (PyObject_GetBuffer(args[1], &header, PyBUF_SIMPLE) != 0)
        return NULL;
    if (PyObject_GetBuffer(plain_obj, &plain, PyBUF_SIMPLE) != 0) {
        PyBuffer_Release(&header);
        return NULL;
    }
    PyObject *result = NULL, *digest = NULL, *packed = NULL;
    if (plain.len > MAX_CHUNK || header.len > 0xFFFFFFFF - RECORD_HEADER_LEN) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    int flags = 0, algo = 0, repeat = 0;
    if (hasher != Py_None) {
        digest = dedup_hash(hasher, plain_obj, repeats, repeats_max, &repeat);
        if (digest == NULL)
            goto done;
        algo = (int)dedup_algo;
        flags = FLAG_HAS_DEDUP_HASH;
        if (repeat)
            compression = COMPRESSION_NONE; /* a repeat: the writer discards its data */
    }
    const unsigned char *stored = (const unsigned char *)plain.buf;
    Py_ssize_t n = plain.len;
    if (compression != COMPRESSION_NONE) {
        packed = PyObject_CallOneArg(packer, plain_obj);
        if (packed == NULL)
            goto done;
        if (!PyBytes_Check(packed)) {
            PyErr_SetString(PyExc_TypeError, "the packer must return bytes");
            goto done;
        }
        if (PyBytes_GET_SIZE(packed) < plain.len) {
            stored = (const unsigned char *)PyBytes_AS_STRING(packed);
            n = PyBytes_GET_SIZE(packed);
        } else {
            compression = COMPRESSION_NONE;
            flags |= FLAG_RAW_FALLBACK;
        }
    }
    if (compression == COMPRESSION_NONE)
        level = 0;
    flags |= FLAG_STORED_HASH;

    Py_ssize_t total = RECORD_HEADER_LEN + header.len + RECORD_HEADER_LEN + CHUNK_HEADER_LEN
                       + (n ? RECORD_HEADER_LEN + TAG_LEN + n : 0) + RECORD_HEADER_LEN + CHUNK_FOOTER_LEN;
    PyObject *records = PyBytes_FromStringAndSize(NULL, total);
    if (records == NULL)
        goto done;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(records);
    p = put_record_header(p, TYPE_ARCHIVE_HEADER, (uint32_t)header.len);
    memcpy(p, header.buf, (size_t)header.len);
    p += header.len;

    /* The chunk header body (CHUNK_HEADER in _records.py, docs/format.md section 5.1). */
    p = put_record_header(p, TYPE_CHUNK_HEADER, CHUNK_HEADER_LEN);
    memset(p, 0, CHUNK_HEADER_LEN);                   /* zero: seq, offset, padding, nonce */
    accel_store_u32le(p, (uint32_t)index);            /* object index; chunk seq and offset 0 */
    accel_store_u32le(p + 16, (uint32_t)plain.len);
    accel_store_u32le(p + 20, (uint32_t)n);
    p[24] = (unsigned char)compression;
    p[25] = (unsigned char)(signed char)level;
    p[26] = 0;                                        /* no encryption */
    p[27] = (unsigned char)flags;
    p[28] = (unsigned char)algo;
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits(stored, (size_t)n));
    memcpy(p + 48, canonical.digest, 16);
    if (digest != NULL)
        memcpy(p + 64, PyBytes_AS_STRING(digest), 32);
    p += CHUNK_HEADER_LEN;

    if (n) {
        p = put_record_header(p, TYPE_DATA, (uint32_t)(TAG_LEN + n));
        memset(p, 0, TAG_LEN);
        accel_store_u32le(p, (uint32_t)index);        /* the tag: object index, seq 0, offset 0 */
        p += TAG_LEN;
        memcpy(p, stored, (size_t)n);
        p += n;
    }
    p = put_record_header(p, TYPE_CHUNK_FOOTER, CHUNK_FOOTER_LEN);
    memset(p, 0, CHUNK_FOOTER_LEN);                   /* no sealed hash, no tag */
    accel_store_u32le(p, (uint32_t)index);
    accel_store_u32le(p + 8, (uint32_t)n);

    int required = REQUIRED_STORED_HASH | (compression == COMPRESSION_LZ4 ? REQUIRED_LZ4
                                           : compression == COMPRESSION_ZSTD ? REQUIRED_ZSTD : 0);
    result = Py_BuildValue("(NniO)", records, n, required, digest != NULL ? digest : Py_None);
    goto done;
overflow:
    if (!PyErr_ExceptionMatches(PyExc_OverflowError))
        return NULL;
    PyErr_Clear();
    Py_RETURN_NONE;
done:
    Py_XDECREF(packed);
    Py_XDECREF(digest);
    PyBuffer_Release(&plain);
    PyBuffer_Release(&header);
    return result;
}

PyMethodDef accel_frame_methods[] = {
    {"frame_whole", (PyCFunction)(void (*)(void))accel_frame_whole, METH_FASTCALL, frame_whole_doc},
    {NULL, NULL, 0, NULL},
};
