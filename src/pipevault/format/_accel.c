/* Compiled forms of the superblock checksum (docs/format.md section 2) and of the reader's
 * commonest superblock.
 *
 * The readable specification is pipevault/format/_superblock.py (data_spans and checksum);
 * checksum() computes the same value in one call, because the Python walk and the several
 * streaming hash updates cost more per superblock than the bytes they hash. sole_data()
 * recognises a superblock that is nothing but one piece of a chunk's stored bytes (most
 * superblocks of large untransformed objects) and verifies it in one call; anything else is
 * left to the Python reader. Records are in _accel_records.c, field lists in _accel_fields.c.
 * Tests check all agree with the Python code on any input.
 *
 * The hash itself is not reimplemented: the covered bytes are fed to libxxhash's streaming
 * xxh3-64 (accel_superblock_checksum; the streaming hash of the parts equals
 * python-xxhash's xxh3 of their concatenation). Nothing is kept between calls and the GIL is
 * held throughout, so the module is safe wherever the Python code is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h>
#endif

#include "_accel.h"
#include "_accel_xxh.h"


#define load_u32le accel_load_u32le
#define load_u64le accel_load_u64le

uint64_t
accel_superblock_checksum(const unsigned char *buf, Py_ssize_t start, Py_ssize_t end)
{
    /* The walk of _superblock.data_spans: everything but the stored bytes of DATA records. */
    XXH3_state_t state;
    XXH3_INITSTATE(&state);
    XXH3_64bits_reset(&state);
    XXH3_64bits_update(&state, buf, CHECKSUM_OFFSET);
    Py_ssize_t pos = start, from = start;
    while (pos + RECORD_HEADER_LEN <= end) {
        uint32_t length = accel_load_u32le(buf + pos + 4);
        Py_ssize_t next = pos + RECORD_HEADER_LEN + (Py_ssize_t)length;
        if (next > end)
            break;
        if (buf[pos] == TYPE_DATA && length > TAG_LEN) {
            Py_ssize_t lo = pos + RECORD_HEADER_LEN + TAG_LEN;
            XXH3_64bits_update(&state, buf + from, (size_t)(lo - from));
            from = next;
        }
        pos = next;
    }
    XXH3_64bits_update(&state, buf + from, (size_t)(end - from));
    return XXH3_64bits_digest(&state);
}

PyDoc_STRVAR(checksum_doc,
"checksum(buf, start, end) -> int\n\n"
"xxh3-64 of buf[:56] followed by the payload buf[start:end] without the stored bytes of its\n"
"DATA records: what _superblock.checksum(buf, end, data_spans(buf, start, end), start) returns.\n"
"buf is read during the call only. Raises ValueError when not 56 <= start <= end <= len(buf).");

static PyObject *
accel_checksum(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "checksum(buf, start, end) takes 3 arguments");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0)
        return NULL;
    PyObject *result = NULL;
    if (start < CHECKSUM_OFFSET || start > end || end > view.len) {
        PyErr_Format(PyExc_ValueError, "payload [%zd, %zd) is not inside a buffer of %zd bytes",
                     start, end, view.len);
        goto done;
    }
    result = PyLong_FromUnsignedLongLong(
        accel_superblock_checksum((const unsigned char *)view.buf, start, end));
done:
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(sole_data_doc,
"sole_data(buf) -> (session_id, seq, checksum, object_index, chunk_seq, object_offset,\n"
"                   stored_offset, start, end) | None\n\n"
"For a valid version 1 superblock with a 64-byte header, no superblock flags, only known\n"
"required features, whose payload is exactly one DATA record (no record flags, reserved\n"
"bytes zero, at least one stored byte) and whose checksum matches: its header fields, the\n"
"tag header's four fields and the offsets of the stored bytes in buf. None for anything\n"
"else, valid or not: the caller then reads the superblock the general way, which reports\n"
"any damage. buf is read during the call only.");

static PyObject *
accel_sole_data(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0)
        return NULL;
    PyObject *result = NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    const Py_ssize_t first = HEADER_LEN + RECORD_HEADER_LEN + TAG_LEN; /* first stored byte */
    if (view.len <= first || memcmp(b, ACCEL_MAGIC, sizeof ACCEL_MAGIC) != 0 || b[8] != VERSION_MAJOR
            || b[10] != HEADER_LEN || b[11] != 0 || b[12] < MIN_SIZE_LOG2 || b[12] > MAX_SIZE_LOG2
            || b[13] != 0 || (load_u32le(b + 16) & ~(uint32_t)KNOWN_REQUIRED) != 0)
        goto none;
    Py_ssize_t payload_len = (Py_ssize_t)load_u32le(b + 48);
    Py_ssize_t end = HEADER_LEN + payload_len;
    if (payload_len > ((Py_ssize_t)1 << b[12]) - HEADER_LEN || end > view.len || end <= first)
        goto none;
    const unsigned char *r = b + HEADER_LEN;
    if (r[0] != TYPE_DATA || r[1] != 0 || r[2] != 0 || r[3] != 0
            || (Py_ssize_t)load_u32le(r + 4) != payload_len - RECORD_HEADER_LEN)
        goto none;
    uint64_t sealed = load_u64le(b + CHECKSUM_OFFSET);
    if (accel_superblock_checksum(b, HEADER_LEN, first) != sealed)
        goto none;
    const unsigned char *tag = r + RECORD_HEADER_LEN;
    result = Py_BuildValue("(y#KKkkKknn)", (const char *)(b + 24), (Py_ssize_t)16,
                           (unsigned long long)load_u64le(b + 40), (unsigned long long)sealed,
                           (unsigned long)load_u32le(tag), (unsigned long)load_u32le(tag + 4),
                           (unsigned long long)load_u64le(tag + 8), (unsigned long)load_u32le(tag + 16),
                           first, end);
    goto done;
none:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef accel_methods[] = {
    {"checksum", (PyCFunction)(void (*)(void))accel_checksum, METH_FASTCALL, checksum_doc},
    {"sole_data", accel_sole_data, METH_O, sole_data_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef accel_module = {
    PyModuleDef_HEAD_INIT, "pipevault.format._accel",
    "Compiled hot paths of pipevault.format (see _accel.c).", -1, accel_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__accel(void)
{
    if (accel_fields_init() != 0 || accel_records_init() != 0)
        return NULL;
    accel_xxh_init();
    PyObject *module = PyModule_Create(&accel_module);
    if (module != NULL && (PyModule_AddFunctions(module, accel_fields_methods) != 0
                           || PyModule_AddFunctions(module, accel_records_methods) != 0
                           || PyModule_AddFunctions(module, accel_plain_methods) != 0
                           || PyModule_AddFunctions(module, accel_codec_methods) != 0
                           || PyModule_AddFunctions(module, accel_walk_methods) != 0
                           || PyModule_AddFunctions(module, accel_frame_methods) != 0))
        Py_CLEAR(module);
    return module;
}
