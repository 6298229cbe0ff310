/* Compiled packing of a whole chunk into superblocks (docs/format.md sections 2 and 5).
 *
 * The readable specification is SessionWriter._put_plain_python and add_chunk's Python path
 * with _put, _put_data and _seal (pipevault/format/_writer.py): the chunk header record, the
 * chunk's stored bytes as DATA records over as many superblocks as they need, the chunk footer
 * record, every superblock that fills up sealed. pack_plain() writes the same bytes in one
 * call. Where the writer has not hashed the stored bytes yet (untransformed chunks, and
 * compressed ones of format 1.1 without key or dedup), their content hash (xxh3-128) is
 * computed in the same pass as the copy (accel_move_hashed, _accel_xxh.c): the records are
 * laid out first, then the bytes moved into them and hashed a kilobyte at a time. Tests check
 * the digests equal python-xxhash's and the superblocks equal the Python writer's.
 *
 * The GIL is held throughout; new superblock buffers come from the caller's allocate callable.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_accel.h"
#include "_accel_xxh.h"

#define CONTENT_HASH_AT 48

typedef struct {
    PyObject *obj; /* a reference to the buffer's owner */
    Py_buffer view;
} Block;

typedef struct {
    PyObject *allocate;
    Py_ssize_t size;
    Block *blocks;
    Py_ssize_t count, cap;
    Py_ssize_t sealed; /* blocks[:sealed] are complete */
    unsigned char header[CHECKSUM_OFFSET]; /* the superblock header fields but seq, length, flags */
    uint64_t seq;
    int flags; /* of the first block; later ones have none */
} Packer;

static unsigned char *
block_at(Packer *p, Py_ssize_t i)
{
    return (unsigned char *)p->blocks[i].view.buf;
}

/* Raise what SessionWriter._new_buffer raises for a buffer shorter than a superblock. */
static void
too_short(Py_ssize_t got, Py_ssize_t size)
{
    PyObject *errors = PyImport_ImportModule("pipevault.format.errors");
    PyObject *cls = errors != NULL ? PyObject_GetAttrString(errors, "LimitError") : NULL;
    Py_XDECREF(errors);
    if (cls == NULL)
        return;
    PyErr_Format(cls, "allocated superblock buffer of %zd bytes, need %zd", got, size);
    Py_DECREF(cls);
}

/* Append given (a reference is taken), or a fresh buffer from allocate() when given is NULL.
 * Returns 0, or -1 with an exception set. */
static int
add_block(Packer *p, PyObject *given)
{
    if (p->count == p->cap) {
        Py_ssize_t cap = p->cap ? 2 * p->cap : 8;
        Block *grown = PyMem_Realloc(p->blocks, (size_t)cap * sizeof(Block));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        p->blocks = grown;
        p->cap = cap;
    }
    PyObject *obj = given != NULL ? Py_NewRef(given) : PyObject_CallNoArgs(p->allocate);
    if (obj == NULL)
        return -1;
    Block *b = &p->blocks[p->count];
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_WRITABLE) != 0) {
        Py_DECREF(obj);
        return -1;
    }
    if (b->view.len < p->size) {
        too_short(b->view.len, p->size);
        PyBuffer_Release(&b->view);
        Py_DECREF(obj);
        return -1;
    }
    if (b->view.len > p->size && given == NULL) {
        /* As SessionWriter._new_buffer: the superblock is the buffer's first size bytes. */
        PyBuffer_Release(&b->view);
        PyObject *head = PySequence_GetSlice(obj, 0, p->size);
        Py_DECREF(obj);
        if (head == NULL)
            return -1;
        obj = head;
        if (PyObject_GetBuffer(obj, &b->view, PyBUF_WRITABLE) != 0) {
            Py_DECREF(obj);
            return -1;
        }
    }
    b->obj = obj;
    p->count++;
    return 0;
}

/* Write the header fields of the last block, whose payload ends at pos, and zero its padding
 * (pool buffers are reused: it must not leak old contents); the checksum comes later. */
static void
close_block(Packer *p, Py_ssize_t pos)
{
    unsigned char *b = block_at(p, p->count - 1);
    memcpy(b, p->header, CHECKSUM_OFFSET);
    b[13] = (unsigned char)(p->sealed == 0 ? p->flags : 0);
    accel_store_u64le(b + 40, p->seq + (uint64_t)(p->count - 1));
    accel_store_u32le(b + 48, (uint32_t)(pos - HEADER_LEN));
    if (pos < p->size)
        memset(b + pos, 0, (size_t)(p->size - pos));
    p->sealed = p->count;
}

static void
checksum_block(Packer *p, Py_ssize_t i)
{
    unsigned char *b = block_at(p, i);
    Py_ssize_t end = HEADER_LEN + (Py_ssize_t)accel_load_u32le(b + 48);
    accel_store_u64le(b + CHECKSUM_OFFSET, accel_superblock_checksum(b, HEADER_LEN, end));
}

/* Seal the last block, its payload ending at pos (its checksum waits if it is the block of
 * the chunk header, whose content hash is not known yet), and start a fresh one at HEADER_LEN.
 * Returns 0, or -1 with an exception set. */
static int
next_block(Packer *p, Py_ssize_t pos, Py_ssize_t head_block)
{
    close_block(p, pos);
    if (p->count - 1 != head_block)
        checksum_block(p, p->count - 1);
    return add_block(p, NULL);
}

static void
put_record(unsigned char *at, int type, Py_ssize_t length)
{
    at[0] = (unsigned char)type;
    memset(at + 1, 0, 3);
    accel_store_u32le(at + 4, (uint32_t)length);
}

/* Append each sealed buffer to done and put point, its first item replaced by the buffer's
 * seq, at points[seq % len(points)]. Returns 0, or -1 with an exception set. */
static int
record_sealed(const Packer *p, PyObject *done, PyObject *points, PyObject *point)
{
    Py_ssize_t ring = PyList_GET_SIZE(points), width = PyTuple_GET_SIZE(point);
    for (Py_ssize_t i = 0; i < p->sealed; i++) {
        if (PyList_Append(done, p->blocks[i].obj) != 0)
            return -1;
        PyObject *state = PyTuple_New(width);
        if (state == NULL)
            return -1;
        uint64_t seq = p->seq + (uint64_t)i;
        PyObject *number = PyLong_FromUnsignedLongLong(seq);
        if (number == NULL) {
            Py_DECREF(state);
            return -1;
        }
        PyTuple_SET_ITEM(state, 0, number);
        for (Py_ssize_t k = 1; k < width; k++)
            PyTuple_SET_ITEM(state, k, Py_NewRef(PyTuple_GET_ITEM(point, k)));
        if (PyList_SetItem(points, (Py_ssize_t)(seq % (uint64_t)ring), state) != 0)
            return -1;
    }
    return 0;
}

PyDoc_STRVAR(pack_plain_doc,
"pack_plain(allocate, buf, pos, flags, session_id, seq, size_log2, required, optional,\n"
"           header, footer, data, done, points, point, hashed) -> (sealed, buf, pos)\n\n"
"Pack one chunk as SessionWriter._put_plain_python (or add_chunk) does: the chunk header\n"
"record (the 96-byte body header; with hashed true, its content hash replaced by the\n"
"xxh3-128 of data, computed as data is copied), data as DATA\n"
"records tagged with the header's object index, chunk seq and object offset, then the chunk\n"
"footer record (the 48-byte body footer). buf is the open superblock (None for none) with its\n"
"payload ending at pos and flags its superblock flags; further buffers come from allocate()\n"
"(no argument; a writable buffer of at least 2**size_log2 bytes, of which the first 2**size_log2\n"
"are used: a longer one is sliced). Every superblock that fills\n"
"is completed with its header (session_id, seq onwards, required, optional), padding and\n"
"checksum, appended to the list done, and its resume state recorded as the writer's _sealed\n"
"does: point (a tuple) with its first item replaced by the superblock's seq, at\n"
"points[seq % len(points)]. Returns how many were sealed and the open superblock with the\n"
"end of its payload. Buffers are used during the call only. Raises format.errors.LimitError\n"
"for a buffer from allocate that is too short, ValueError for fields out of range, TypeError\n"
"for done, points or point of the wrong type, and whatever allocate raises (the superblocks\n"
"written so far are then unusable).");

static PyObject *
accel_pack_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 16) {
        PyErr_SetString(PyExc_TypeError, "pack_plain takes 16 arguments");
        return NULL;
    }
    int hashed = PyObject_IsTrue(args[15]);
    if (hashed < 0)
        return NULL;
    PyObject *done_list = args[12], *points = args[13], *point = args[14];
    if (!PyList_Check(done_list) || !PyList_Check(points) || PyList_GET_SIZE(points) == 0
            || !PyTuple_Check(point) || PyTuple_GET_SIZE(point) == 0) {
        PyErr_SetString(PyExc_TypeError, "pack_plain: done and points must be lists, point a tuple");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[2]);
    long flags = PyLong_AsLong(args[3]);
    unsigned long long seq = PyLong_AsUnsignedLongLong(args[5]);
    long size_log2 = PyLong_AsLong(args[6]);
    unsigned long required = PyLong_AsUnsignedLong(args[7]);
    unsigned long optional = PyLong_AsUnsignedLong(args[8]);
    if (PyErr_Occurred())
        return NULL;
    if (size_log2 < MIN_SIZE_LOG2 || size_log2 > MAX_SIZE_LOG2 || flags < 0 || flags > 0xFF
            || required > 0xFFFFFFFFUL || optional > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "pack_plain: a field is out of range");
        return NULL;
    }
    Packer p = {.allocate = args[0], .size = (Py_ssize_t)1 << size_log2, .seq = seq, .flags = (int)flags};
    Py_buffer sid = {0}, head = {0}, foot = {0}, data = {0};
    PyObject *result = NULL;
    AccelMove *heap_moves = NULL;
    if (PyObject_GetBuffer(args[4], &sid, PyBUF_SIMPLE) != 0)
        goto done;
    if (PyObject_GetBuffer(args[9], &head, PyBUF_SIMPLE) != 0)
        goto done;
    if (PyObject_GetBuffer(args[10], &foot, PyBUF_SIMPLE) != 0)
        goto done;
    if (PyObject_GetBuffer(args[11], &data, PyBUF_SIMPLE) != 0)
        goto done;
    if (sid.len != 16 || head.len != CHUNK_HEADER_LEN || foot.len != CHUNK_FOOTER_LEN
            || data.len > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "pack_plain: session id, header, footer or data of the wrong size");
        goto done;
    }
    unsigned char *h = p.header;
    memcpy(h, ACCEL_MAGIC, sizeof ACCEL_MAGIC);
    h[8] = VERSION_MAJOR;
    h[9] = VERSION_MINOR;
    h[10] = HEADER_LEN;
    h[11] = 0;
    h[12] = (unsigned char)size_log2;
    memset(h + 13, 0, 3);
    accel_store_u32le(h + 16, (uint32_t)required);
    accel_store_u32le(h + 20, (uint32_t)optional);
    memcpy(h + 24, sid.buf, 16);
    memset(h + 40, 0, 16);

    if (args[1] == Py_None) {
        if (add_block(&p, NULL) != 0)
            goto done;
        pos = HEADER_LEN;
    }
    else {
        if (add_block(&p, args[1]) != 0)
            goto done;
        if (pos < HEADER_LEN || pos > p.size) {
            PyErr_SetString(PyExc_ValueError, "pack_plain: pos is outside the superblock");
            goto done;
        }
    }
    /* The chunk header record is never split: it goes where it fits whole. */
    if (pos + RECORD_HEADER_LEN + CHUNK_HEADER_LEN > p.size) {
        if (next_block(&p, pos, -1) != 0)
            goto done;
        pos = HEADER_LEN;
    }
    const Py_ssize_t head_block = p.count - 1, hash_at = pos + RECORD_HEADER_LEN + CONTENT_HASH_AT;
    put_record(block_at(&p, head_block) + pos, TYPE_CHUNK_HEADER, CHUNK_HEADER_LEN);
    memcpy(block_at(&p, head_block) + pos + RECORD_HEADER_LEN, head.buf, CHUNK_HEADER_LEN);
    pos += RECORD_HEADER_LEN + CHUNK_HEADER_LEN;

    const unsigned char *tag = (const unsigned char *)head.buf; /* object_index, chunk_seq, object_offset */
    const unsigned char *src = (const unsigned char *)data.buf;
    /* The records are laid out first, the bytes moved after: with the hash, in one pass. */
    AccelMove stack_moves[8], *moves = stack_moves;
    Py_ssize_t n_moves = 0, max_moves = data.len / (p.size - HEADER_LEN - RECORD_HEADER_LEN - TAG_LEN) + 2;
    if (max_moves > (Py_ssize_t)(sizeof stack_moves / sizeof *stack_moves)) {
        moves = heap_moves = PyMem_Malloc((size_t)max_moves * sizeof *moves);
        if (moves == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_ssize_t done = 0;
    while (done < data.len) {
        Py_ssize_t room = p.size - pos - RECORD_HEADER_LEN - TAG_LEN;
        if (room <= 0) {
            if (next_block(&p, pos, head_block) != 0)
                goto done;
            pos = HEADER_LEN;
            continue;
        }
        Py_ssize_t n = data.len - done < room ? data.len - done : room;
        unsigned char *b = block_at(&p, p.count - 1) + pos;
        put_record(b, TYPE_DATA, TAG_LEN + n);
        memcpy(b + RECORD_HEADER_LEN, tag, 16);
        accel_store_u32le(b + RECORD_HEADER_LEN + 16, (uint32_t)done);
        accel_store_u32le(b + RECORD_HEADER_LEN + 20, 0);
        moves[n_moves++] = (AccelMove){src + done, b + RECORD_HEADER_LEN + TAG_LEN, (size_t)n};
        pos += RECORD_HEADER_LEN + TAG_LEN + n;
        done += n;
    }
    unsigned char digest[16];
    if (hashed)
        accel_move_hashed(src, (size_t)data.len, moves, digest);
    else
        for (Py_ssize_t i = 0; i < n_moves; i++)
            memcpy(moves[i].dst, moves[i].src, moves[i].len);
    if (pos + RECORD_HEADER_LEN + CHUNK_FOOTER_LEN > p.size) {
        if (next_block(&p, pos, head_block) != 0)
            goto done;
        pos = HEADER_LEN;
    }
    put_record(block_at(&p, p.count - 1) + pos, TYPE_CHUNK_FOOTER, CHUNK_FOOTER_LEN);
    memcpy(block_at(&p, p.count - 1) + pos + RECORD_HEADER_LEN, foot.buf, CHUNK_FOOTER_LEN);
    pos += RECORD_HEADER_LEN + CHUNK_FOOTER_LEN;

    if (hashed)
        memcpy(block_at(&p, head_block) + hash_at, digest, sizeof digest);
    if (head_block < p.sealed) /* its checksum covers the content hash: computed last */
        checksum_block(&p, head_block);

    if (record_sealed(&p, done_list, points, point) != 0)
        goto done;
    result = Py_BuildValue("(nOn)", p.sealed, p.blocks[p.count - 1].obj, pos);
done:
    PyMem_Free(heap_moves);
    for (Py_ssize_t i = 0; i < p.count; i++) {
        PyBuffer_Release(&p.blocks[i].view);
        Py_DECREF(p.blocks[i].obj);
    }
    PyMem_Free(p.blocks);
    if (data.obj != NULL)
        PyBuffer_Release(&data);
    if (foot.obj != NULL)
        PyBuffer_Release(&foot);
    if (head.obj != NULL)
        PyBuffer_Release(&head);
    if (sid.obj != NULL)
        PyBuffer_Release(&sid);
    return result;
}

PyMethodDef accel_plain_methods[] = {
    {"pack_plain", (PyCFunction)(void (*)(void))accel_pack_plain, METH_FASTCALL, pack_plain_doc},
    {NULL, NULL, 0, NULL},
};
