/* Compiled decoding of a compressed chunk's stored bytes (docs/format.md sections 5.4 and 5.5).
 *
 * The readable specification is _chunk.ChunkDecoder with _codecs.decompress: check the
 * content hash of the stored bytes (format 1.1, STORED_HASH), then decompress them to exactly
 * plain_len bytes. unpack_stored() does both in one call on the stored bytes as the pieces they
 * arrived in (one per superblock), without joining them first where the codec allows: zstd
 * decompresses a stream fed piece by piece straight into the output; lz4 blocks must be
 * contiguous, so their pieces are joined and hashed in the same pass. It returns None for
 * anything unusual (a hash that differs, data that does not decompress to exactly plain_len,
 * a zstd frame header split over pieces): the Python code then decodes the chunk and raises
 * the precise error. Codecs come from libzstd and liblz4, hashes from libxxhash.
 *
 * The GIL is released while hashing and decompressing (the DataPipe runs decoders as thread
 * stages). zstd decompression contexts are kept in a small free list taken from and given back
 * under the GIL, so each is used by one thread at a time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include <lz4.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_d_stableOutBuffer */
#include <zstd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h>
#endif

#include "_accel.h"
#include "_accel_xxh.h"

#define LZ4 1
#define ZSTD 2
#define MAX_CHUNK ((Py_ssize_t)64 << 20) /* _codecs.MAX_CHUNK */

#define SPARE 8
static ZSTD_DCtx *spare[SPARE]; /* free decompression contexts; touched only with the GIL held */
static int spares;

typedef struct {
    Py_buffer *views;
    Py_ssize_t count;
    Py_ssize_t total;
} Pieces;

static void
release(Pieces *p)
{
    for (Py_ssize_t i = 0; i < p->count; i++)
        PyBuffer_Release(&p->views[i]);
    PyMem_Free(p->views);
}

/* The buffers of the sequence seq. Returns 0, or -1 with an exception set. */
static int
get_pieces(PyObject *seq, Pieces *p)
{
    p->views = NULL;
    p->count = p->total = 0;
    PyObject *fast = PySequence_Fast(seq, "unpack_stored: pieces must be a sequence");
    if (fast == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    p->views = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Py_buffer));
    if (p->views == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyObject_GetBuffer(items[i], &p->views[i], PyBUF_SIMPLE) != 0) {
            Py_DECREF(fast);
            release(p);
            return -1;
        }
        p->count++;
        p->total += p->views[i].len;
    }
    Py_DECREF(fast);
    return 0;
}

/* Whether xxh3-128 of the pieces equals the canonical digest want (NULL: no check), the pieces
 * joined into join first when it is not NULL (in the same pass as the hash, see _accel_xxh.c;
 * moves has room for one per piece). */
static int
hashed_join(const Pieces *p, const unsigned char *want, unsigned char *join, AccelMove *moves)
{
    unsigned char digest[16];
    if (join != NULL) {
        size_t at = 0;
        for (Py_ssize_t i = 0; i < p->count; i++) {
            moves[i] = (AccelMove){p->views[i].buf, join + at, (size_t)p->views[i].len};
            at += (size_t)p->views[i].len;
        }
        if (want != NULL)
            accel_move_hashed(join, at, moves, digest);
        else
            for (Py_ssize_t i = 0; i < p->count; i++)
                memcpy(moves[i].dst, moves[i].src, moves[i].len);
    }
    else if (want != NULL) {
        XXH3_state_t state;
        XXH3_INITSTATE(&state);
        XXH3_128bits_reset(&state);
        for (Py_ssize_t i = 0; i < p->count; i++)
            XXH3_128bits_update(&state, p->views[i].buf, (size_t)p->views[i].len);
        XXH128_canonical_t canonical;
        XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(&state));
        memcpy(digest, canonical.digest, sizeof digest);
    }
    return want == NULL || memcmp(digest, want, sizeof digest) == 0;
}

/* Decompress the zstd frame in the pieces into out (exactly plain_len bytes). 1 on success. */
static int
unzstd(ZSTD_DCtx *dctx, const Pieces *p, char *out, Py_ssize_t plain_len)
{
    if (p->count == 0)
        return 0;
    const Py_buffer *first = &p->views[0];
    if (ZSTD_getFrameContentSize(first->buf, (size_t)first->len) != (unsigned long long)plain_len)
        return 0; /* a different size, no size, or a header split over pieces */
    if (p->count == 1) {
        /* One frame exactly, as _codecs.decompress accepts it. */
        size_t frame = ZSTD_findFrameCompressedSize(first->buf, (size_t)first->len);
        if (ZSTD_isError(frame) || frame != (size_t)first->len)
            return 0;
        size_t got = ZSTD_decompressDCtx(dctx, out, (size_t)plain_len, first->buf, (size_t)first->len);
        return !ZSTD_isError(got) && got == (size_t)plain_len;
    }
    ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
    /* The whole output is there from the start: zstd decodes straight into it. */
    if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_stableOutBuffer, 1)))
        return 0;
    ZSTD_outBuffer o = {out, (size_t)plain_len, 0};
    size_t ret = 1;
    for (Py_ssize_t i = 0; i < p->count; i++) {
        ZSTD_inBuffer in = {p->views[i].buf, (size_t)p->views[i].len, 0};
        while (in.pos < in.size) {
            if (ret == 0)
                return 0; /* bytes after the frame */
            size_t was_in = in.pos, was_out = o.pos;
            ret = ZSTD_decompressStream(dctx, &o, &in);
            if (ZSTD_isError(ret) || (ret != 0 && in.pos == was_in && o.pos == was_out))
                return 0; /* damaged, or stuck: more output than plain_len */
        }
    }
    return ret == 0 && o.pos == (size_t)plain_len;
}

PyDoc_STRVAR(unpack_stored_doc,
"unpack_stored(compression, pieces, plain_len, content_hash) -> bytes | None\n\n"
"The plaintext of a chunk compressed with compression (1 lz4, 2 zstd) whose stored bytes are\n"
"the buffers of pieces, in order, joined: checked against content_hash (16 bytes, the\n"
"canonical xxh3-128 of the stored bytes; None when something else vouches for them, as the\n"
"GCM tag does: damaged bytes nothing vouches for may decode otherwise than with the zstd of\n"
"the Python package), then decompressed to exactly plain_len bytes (new bytes, owned by the\n"
"caller).\n"
"None for anything else: a hash that differs, data that is not one valid stream of\n"
"plain_len bytes, a zstd frame header split over pieces, another compression; the caller\n"
"then decodes the chunk the Python way, which raises the precise error. The pieces are read\n"
"during the call only. Raises TypeError for arguments of the wrong type.");

PyObject *
accel_unpack_stored(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "unpack_stored takes 4 arguments");
        return NULL;
    }
    long algo = PyLong_AsLong(args[0]);
    Py_ssize_t plain_len = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred())
        return NULL;
    const unsigned char *want = NULL;
    if (args[3] != Py_None) {
        if (!PyBytes_Check(args[3])) {
            PyErr_SetString(PyExc_TypeError, "unpack_stored: content_hash must be bytes or None");
            return NULL;
        }
        if (PyBytes_GET_SIZE(args[3]) != 16)
            Py_RETURN_NONE;
        want = (const unsigned char *)PyBytes_AS_STRING(args[3]);
    }
    if ((algo != LZ4 && algo != ZSTD) || plain_len < 0 || plain_len > MAX_CHUNK)
        Py_RETURN_NONE;
    Pieces p;
    if (get_pieces(args[1], &p) != 0)
        return NULL;
    PyObject *out = NULL;
    unsigned char *join = NULL;
    int ok = 0;
    AccelMove *moves = NULL;
    if (algo == LZ4 && p.count > 1) {
        join = PyMem_Malloc((size_t)(p.total ? p.total : 1));
        moves = PyMem_Malloc((size_t)p.count * sizeof *moves);
        if (join == NULL || moves == NULL) {
            PyMem_Free(join);
            PyMem_Free(moves);
            release(&p);
            return PyErr_NoMemory();
        }
    }
    out = PyBytes_FromStringAndSize(NULL, plain_len);
    if (out == NULL)
        goto done;
    char *dst = PyBytes_AS_STRING(out);
    ZSTD_DCtx *dctx = NULL;
    if (algo == ZSTD) {
        dctx = spares ? spare[--spares] : ZSTD_createDCtx();
        if (dctx == NULL)
            goto done;
    }
    /* The pieces stay exported and out is not shared yet: both are safe without the GIL. */
    Py_BEGIN_ALLOW_THREADS
    /* Checked before decompressing: damaged bytes never reach the decompressor. */
    if (hashed_join(&p, want, join, moves)) {
        if (algo == ZSTD)
            ok = unzstd(dctx, &p, dst, plain_len);
        else if (p.total <= INT32_MAX && plain_len <= INT32_MAX) {
            const char *src = join != NULL ? (const char *)join : p.count ? p.views[0].buf : "";
            ok = LZ4_decompress_safe(src, dst, (int)p.total, (int)plain_len) == (int)plain_len;
        }
    }
    Py_END_ALLOW_THREADS
    if (dctx != NULL) {
        if (spares < SPARE)
            spare[spares++] = dctx;
        else
            ZSTD_freeDCtx(dctx);
    }
done:
    PyMem_Free(moves);
    PyMem_Free(join);
    release(&p);
    if (out == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    if (!ok) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
}

PyMethodDef accel_codec_methods[] = {
    {"unpack_stored", (PyCFunction)(void (*)(void))accel_unpack_stored, METH_FASTCALL, unpack_stored_doc},
    {NULL, NULL, 0, NULL},
};
