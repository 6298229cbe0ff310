/* The reader's commonest superblock of compressed chunks, read in one call (docs/format.md
 * sections 2, 3 and 5).
 *
 * A compressed chunk (0.2-0.4 of its plaintext) seldom fills superblocks alone: most of
 * them hold the end of one chunk, its footer, the next chunk's header and the start of its
 * bytes. The readable specification is the Python reader: Scanner.feed, SessionReader.feed,
 * _records, _data, _chunk_header, _chunk_footer and ChunkAssembly (pipevault/format/
 * _reader.py, _chunk.py). walk_chunks() does what they do for a superblock that holds
 * nothing but DATA, CHUNK_HEADER and CHUNK_FOOTER records of compressed chunks whose hash
 * covers their stored bytes (format 1.1, no key, no dedup), read by a reader that delivers
 * views: it verifies the superblock, follows the records, checks and decompresses each chunk
 * completed (unpack_stored) and builds its ChunkRead. Anything else, and anything the Python
 * code would report or raise (damage, a gap, a chunk out of place, a hash that differs), it
 * declines (None) having changed nothing, and the Python reader reads the superblock.
 *
 * Tests compare the events and the reader's state with and without it on any sequence of
 * superblocks, damaged or not.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_accel.h"

#define STORED_HASH 0x08 /* _records.ChunkFlags */
#define DUPLICATE 0x02
/* ChunkHeader fields, by position (a NamedTuple). */
#define H_OBJECT_INDEX 0
#define H_CHUNK_SEQ 1
#define H_OBJECT_OFFSET 2
#define H_PLAIN_LEN 3
#define H_STORED_LEN 4
#define H_COMPRESSION 5
#define H_ENCRYPTION 7
#define H_FLAGS 8
#define H_CONTENT_HASH 11

static long long
field(PyObject *header, Py_ssize_t i)
{
    return PyLong_AsLongLong(PyTuple_GET_ITEM(header, i));
}

/* Whether the reader hands out the chunk of header as walk_chunks delivers it: compressed,
 * hashed as stored, not encrypted, not a duplicate, not deferred (defer: the reader's). */
static int
eligible(PyObject *header, long long defer)
{
    long long flags = field(header, H_FLAGS);
    long long plain = field(header, H_PLAIN_LEN);
    return field(header, H_COMPRESSION) != 0 && field(header, H_ENCRYPTION) == 0
           && (flags & (STORED_HASH | DUPLICATE)) == STORED_HASH && !(defer > 0 && defer <= plain)
           && !PyErr_Occurred();
}

typedef struct {
    PyObject *chunk;  /* the open chunk's header (a new reference) or NULL */
    PyObject *before; /* its pieces held by the reader before this superblock (borrowed) or NULL */
    PyObject *pieces; /* its pieces found in this superblock (a new list) or NULL */
    long long got, next_chunk, obj_offset, obj_index, delivered_index, delivered_seq, first_seq;
    PyObject *events;
} Walk;

/* The open chunk is complete (footer read): check and decompress it, deliver its ChunkRead.
 * Returns 1, 0 to decline, or -1 with an exception set. */
static int
complete(Walk *w, PyObject *session_id, unsigned long long seq, PyObject *read_cls)
{
    PyObject *h = w->chunk;
    Py_ssize_t nb = w->before != NULL ? PyList_GET_SIZE(w->before) : 0, nn = PyList_GET_SIZE(w->pieces);
    PyObject *all = PyTuple_New(nb + nn);
    if (all == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < nb; i++)
        PyTuple_SET_ITEM(all, i, Py_NewRef(PyList_GET_ITEM(w->before, i)));
    for (Py_ssize_t i = 0; i < nn; i++)
        PyTuple_SET_ITEM(all, nb + i, Py_NewRef(PyList_GET_ITEM(w->pieces, i)));
    PyObject *args[4] = {PyTuple_GET_ITEM(h, H_COMPRESSION), all, PyTuple_GET_ITEM(h, H_PLAIN_LEN),
                         PyTuple_GET_ITEM(h, H_CONTENT_HASH)};
    PyObject *data = accel_unpack_stored(NULL, args, 4);
    Py_DECREF(all);
    if (data == NULL)
        return -1;
    if (data == Py_None) {
        Py_DECREF(data);
        return 0;
    }
    long long index = field(h, H_OBJECT_INDEX), chunk_seq = field(h, H_CHUNK_SEQ);
    long long plain = field(h, H_PLAIN_LEN);
    if (PyErr_Occurred()) {
        Py_DECREF(data);
        return -1;
    }
    int rc = 1;
    if (index > w->delivered_index || (index == w->delivered_index && chunk_seq > w->delivered_seq)) {
        w->delivered_index = index;
        w->delivered_seq = chunk_seq;
        PyObject *pieces = PyTuple_Pack(1, data);
        PyObject *first = PyLong_FromLongLong(w->first_seq), *last = PyLong_FromUnsignedLongLong(seq);
        PyObject *event = NULL;
        if (pieces != NULL && first != NULL && last != NULL) {
            PyObject *values[8] = {read_cls, session_id, first, last, h, data, pieces, Py_False};
            event = accel_make(NULL, values, 8);
        }
        Py_XDECREF(pieces);
        Py_XDECREF(first);
        Py_XDECREF(last);
        rc = event != NULL && PyList_Append(w->events, event) == 0 ? 1 : -1;
        Py_XDECREF(event);
    }
    Py_DECREF(data);
    Py_CLEAR(w->chunk);
    Py_CLEAR(w->pieces);
    w->before = NULL;
    w->next_chunk += 1;
    w->obj_offset += plain;
    return rc;
}

/* Follow the records of payload b[HEADER_LEN:end]. Returns 1, 0 to decline, or -1 with an
 * exception set. */
static int
walk(Walk *w, PyObject *block, const unsigned char *b, Py_ssize_t end, unsigned long long seq,
     long long defer, PyObject *session_id, PyObject *types)
{
    Py_ssize_t pos = HEADER_LEN;
    while (pos < end) {
        if (pos + RECORD_HEADER_LEN > end)
            return 0;
        const unsigned char *r = b + pos;
        Py_ssize_t start = pos + RECORD_HEADER_LEN, stop = start + (Py_ssize_t)accel_load_u32le(r + 4);
        if (r[1] || r[2] || r[3] || stop > end)
            return 0;
        if (r[0] == TYPE_DATA) {
            if (w->chunk == NULL || stop - start < TAG_LEN)
                return 0;
            const unsigned char *tag = b + start;
            long long stored = field(w->chunk, H_STORED_LEN), n = stop - start - TAG_LEN;
            if (accel_load_u32le(tag) != field(w->chunk, H_OBJECT_INDEX)
                    || accel_load_u32le(tag + 4) != field(w->chunk, H_CHUNK_SEQ)
                    || (long long)accel_load_u64le(tag + 8) != field(w->chunk, H_OBJECT_OFFSET)
                    || accel_load_u32le(tag + 16) != w->got || w->got + n > stored)
                return PyErr_Occurred() ? -1 : 0;
            PyObject *piece = PySequence_GetSlice(block, start + TAG_LEN, stop);
            if (piece == NULL || PyList_Append(w->pieces, piece) != 0) {
                Py_XDECREF(piece);
                return -1;
            }
            Py_DECREF(piece);
            w->got += n;
        }
        else if (r[0] == TYPE_CHUNK_FOOTER) {
            PyObject *body = PySequence_GetSlice(block, start, stop);
            if (body == NULL)
                return -1;
            PyObject *args[2] = {body, PyTuple_GET_ITEM(types, 1)};
            PyObject *footer = accel_chunk_footer(NULL, args, 2);
            Py_DECREF(body);
            if (footer == NULL)
                return -1;
            int sound = footer != Py_None && w->chunk != NULL
                        && field(footer, 0) == field(w->chunk, H_OBJECT_INDEX)
                        && field(footer, 1) == field(w->chunk, H_CHUNK_SEQ)
                        && field(footer, 2) == field(w->chunk, H_STORED_LEN)
                        && w->got == field(w->chunk, H_STORED_LEN);
            Py_DECREF(footer);
            if (PyErr_Occurred())
                return -1;
            if (!sound)
                return 0;
            int rc = complete(w, session_id, seq, PyTuple_GET_ITEM(types, 2));
            if (rc != 1)
                return rc;
        }
        else if (r[0] == TYPE_CHUNK_HEADER) {
            if (w->chunk != NULL || w->obj_index < 0)
                return 0;
            PyObject *body = PySequence_GetSlice(block, start, stop);
            if (body == NULL)
                return -1;
            PyObject *args[6] = {body, PyTuple_GET_ITEM(types, 0), PyTuple_GET_ITEM(types, 3),
                                 PyTuple_GET_ITEM(types, 4), PyTuple_GET_ITEM(types, 5), PyTuple_GET_ITEM(types, 6)};
            PyObject *h = accel_chunk_header(NULL, args, 6);
            Py_DECREF(body);
            if (h == NULL)
                return -1;
            if (h == Py_None || !eligible(h, defer) || field(h, H_OBJECT_INDEX) != w->obj_index
                    || field(h, H_CHUNK_SEQ) != w->next_chunk || field(h, H_OBJECT_OFFSET) != w->obj_offset) {
                Py_DECREF(h);
                return PyErr_Occurred() ? -1 : 0;
            }
            w->chunk = h;
            w->before = NULL;
            w->pieces = PyList_New(0);
            if (w->pieces == NULL)
                return -1;
            w->got = 0;
            w->first_seq = (long long)seq;
        }
        else
            return 0;
        pos = stop;
    }
    return 1;
}

PyDoc_STRVAR(walk_chunks_doc,
"walk_chunks(block, session_id_bytes, expected, chunk, got, pieces, obj_index, next_chunk,\n"
"            obj_offset, delivered_index, delivered_seq, first_seq, defer, session_id, types)\n"
"    -> (seq, checksum, chunk, got, new_pieces, next_chunk, obj_offset, delivered_index,\n"
"        delivered_seq, first_seq, events) | None\n\n"
"Read the superblock block (a memoryview) as SessionReader.feed would, given the reader's\n"
"state: the superblock it expects next, the open chunk's header (None for none), its stored\n"
"bytes read so far and the list of their pieces, the open object (-1 for none), the next\n"
"chunk's seq and object offset, the last chunk delivered (-1, -1 for none), the superblock\n"
"the open chunk began in, the reader's defer, its session id (a UUID) and types, the tuple\n"
"(ChunkHeader, ChunkFooter, ChunkRead, compressions, encryptions, dedups, flags) of\n"
"chunk_header(). Returns the reader's state after it (new_pieces: the open chunk's pieces\n"
"found in this superblock) and the ChunkRead events, or None, having changed nothing, for any\n"
"superblock it does not read as the Python reader would without damage (see _accel_walk.c).\n"
"The pieces and chunks' data are views of block. Raises TypeError for arguments of the wrong\n"
"type.");

static PyObject *
accel_walk_chunks(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 15 || !PyMemoryView_Check(args[0]) || !PyBytes_Check(args[1])
            || (args[3] != Py_None && !PyTuple_Check(args[3])) || (args[5] != Py_None && !PyList_Check(args[5]))
            || !PyTuple_Check(args[14]) || PyTuple_GET_SIZE(args[14]) != 7) {
        PyErr_SetString(PyExc_TypeError, "walk_chunks: arguments of the wrong number or type");
        return NULL;
    }
    long long expected = PyLong_AsLongLong(args[2]);
    Walk w = {.chunk = NULL, .before = NULL, .pieces = NULL, .events = NULL};
    w.got = PyLong_AsLongLong(args[4]);
    w.obj_index = PyLong_AsLongLong(args[6]);
    w.next_chunk = PyLong_AsLongLong(args[7]);
    w.obj_offset = PyLong_AsLongLong(args[8]);
    w.delivered_index = PyLong_AsLongLong(args[9]);
    w.delivered_seq = PyLong_AsLongLong(args[10]);
    w.first_seq = PyLong_AsLongLong(args[11]);
    long long defer = PyLong_AsLongLong(args[12]);
    if (PyErr_Occurred())
        return NULL;
    if (args[3] != Py_None) {
        if (args[5] == Py_None || PyTuple_GET_SIZE(args[3]) <= H_CONTENT_HASH)
            Py_RETURN_NONE;
        int ok = eligible(args[3], defer);
        if (PyErr_Occurred())
            return NULL;
        if (!ok)
            Py_RETURN_NONE;
        w.chunk = Py_NewRef(args[3]);
        w.before = args[5];
        w.pieces = PyList_New(0);
        if (w.pieces == NULL) {
            Py_DECREF(w.chunk);
            return NULL;
        }
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) {
        Py_XDECREF(w.chunk);
        Py_XDECREF(w.pieces);
        return NULL;
    }
    PyObject *result = NULL;
    int rc = 0;
    const unsigned char *b = (const unsigned char *)view.buf;
    /* The header checks of sole_data (_accel.c): verify() would accept it, with no flags. */
    if (view.len < HEADER_LEN || memcmp(b, ACCEL_MAGIC, sizeof ACCEL_MAGIC) != 0 || b[8] != VERSION_MAJOR
            || b[10] != HEADER_LEN || b[11] != 0 || b[12] < MIN_SIZE_LOG2 || b[12] > MAX_SIZE_LOG2
            || b[13] != 0 || (accel_load_u32le(b + 16) & ~(uint32_t)KNOWN_REQUIRED) != 0
            || PyBytes_GET_SIZE(args[1]) != 16 || memcmp(b + 24, PyBytes_AS_STRING(args[1]), 16) != 0)
        goto done;
    Py_ssize_t payload_len = (Py_ssize_t)accel_load_u32le(b + 48), end = HEADER_LEN + payload_len;
    unsigned long long seq = accel_load_u64le(b + 40), sealed = accel_load_u64le(b + CHECKSUM_OFFSET);
    if (payload_len > ((Py_ssize_t)1 << b[12]) - HEADER_LEN || end > view.len || expected < 0
            || seq != (unsigned long long)expected || accel_superblock_checksum(b, HEADER_LEN, end) != sealed)
        goto done;
    w.events = PyList_New(0);
    if (w.events == NULL) {
        rc = -1;
        goto done;
    }
    rc = walk(&w, args[0], b, end, seq, defer, args[13], args[14]);
    if (rc == 1) {
        PyObject *chunk = w.chunk != NULL ? w.chunk : Py_None;
        PyObject *pieces = w.pieces != NULL ? w.pieces : Py_None;
        result = Py_BuildValue("(KKOLOLLLLLO)", seq, sealed, chunk, w.got, pieces, w.next_chunk, w.obj_offset,
                               w.delivered_index, w.delivered_seq, w.first_seq, w.events);
    }
done:
    PyBuffer_Release(&view);
    Py_XDECREF(w.chunk);
    Py_XDECREF(w.pieces);
    Py_XDECREF(w.events);
    if (rc < 0 || (result == NULL && PyErr_Occurred()))
        return NULL;
    return result != NULL ? result : Py_NewRef(Py_None);
}

PyMethodDef accel_walk_methods[] = {
    {"walk_chunks", (PyCFunction)(void (*)(void))accel_walk_chunks, METH_FASTCALL, walk_chunks_doc},
    {NULL, NULL, 0, NULL},
};
