/* Compiled forms of the reader's per-record work (docs/format.md sections 3 and 5).
 *
 * The readable specifications are in pipevault/format/_records.py: record_spans() walks a
 * payload's record headers (_records.record_spans), chunk_header() and chunk_footer() decode
 * those records (ChunkHeader.unpack, ChunkFooter.unpack). make() builds the frozen slotted
 * dataclasses made per object (events, encoded chunks, framed objects) without running their
 * Python __init__. A restore of many small objects runs each several times per object, and
 * the Python forms cost more than the bytes they handle. On anything unsound the decoders
 * return None and the Python code raises the precise error. Tests check both agree on any
 * input. The GIL is held throughout; nothing is kept between calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_accel.h"

#define load_u32le accel_load_u32le
#define load_u64le accel_load_u64le
#define FIRST_TYPE 0x01 /* _records.RecordType: SESSION_HEADER .. RESUME */
#define LAST_TYPE 0x0A
#define SKIPPABLE 0x80
#define FLAG_CONTINUES 0x01

static PyObject *empty_tuple; /* () */
static PyObject *slots_name;  /* "__slots__" */

int
accel_records_init(void)
{
    empty_tuple = PyTuple_New(0);
    slots_name = PyUnicode_InternFromString("__slots__");
    return empty_tuple == NULL || slots_name == NULL ? -1 : 0;
}

PyDoc_STRVAR(record_spans_doc,
"record_spans(payload) -> (list of (type, flags, start, end), stop)\n\n"
"The records of payload from its start, as _records.record_spans finds them: each record's\n"
"type, flags and body offsets, up to the first header that is cut short, has reserved bits\n"
"set, runs past the payload or has an unknown type without the skippable bit; stop is where\n"
"that header begins (len(payload) when every record is sound). payload is read during the\n"
"call only.");

static PyObject *
accel_record_spans(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0)
        return NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    Py_ssize_t pos = 0, end = view.len;
    PyObject *spans = PyList_New(0);
    if (spans == NULL)
        goto error;
    while (pos + RECORD_HEADER_LEN <= end) {
        unsigned rtype = b[pos], flags = b[pos + 1];
        Py_ssize_t start = pos + RECORD_HEADER_LEN;
        Py_ssize_t stop = start + (Py_ssize_t)load_u32le(b + pos + 4);
        if (b[pos + 2] || b[pos + 3] || flags & ~(unsigned)FLAG_CONTINUES || stop > end
                || ((rtype < FIRST_TYPE || rtype > LAST_TYPE) && !(rtype & SKIPPABLE)))
            break;
        PyObject *span = Py_BuildValue("(IInn)", rtype, flags, start, stop);
        if (span == NULL || PyList_Append(spans, span) != 0) {
            Py_XDECREF(span);
            goto error;
        }
        Py_DECREF(span);
        pos = stop;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(Nn)", spans, pos);
error:
    Py_XDECREF(spans);
    PyBuffer_Release(&view);
    return NULL;
}

/* A tuple subclass instance (a NamedTuple) of n items, stolen from items. */
static PyObject *
new_tuple_of(PyTypeObject *cls, PyObject **items, Py_ssize_t n)
{
    PyObject *t = cls->tp_alloc(cls, n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (t == NULL || items[i] == NULL) {
            Py_XDECREF(items[i]);
            continue;
        }
        PyTuple_SET_ITEM(t, i, items[i]);
    }
    for (Py_ssize_t i = 0; t != NULL && i < n; i++) {
        if (items[i] == NULL) {
            Py_CLEAR(t);
        }
    }
    return t;
}

#define MAX_CHUNK ((uint64_t)64 << 20)
#define CHUNK_DUPLICATE 2u

PyDoc_STRVAR(chunk_header_doc,
"chunk_header(body, cls, compressions, encryptions, dedups, flags) -> cls | None\n\n"
"ChunkHeader.unpack(body) for a sound header: cls is ChunkHeader, the lists map the stored\n"
"codes to their enum members (the codes index them). None for a short body, an unknown\n"
"transform, lengths or flags out of range or a duplicate claiming stored bytes (the Python\n"
"code then raises the precise error). body is read during the call only.");

PyObject *
accel_chunk_header(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6 || !PyType_Check(args[1]) || !PyList_Check(args[2]) || !PyList_Check(args[3])
            || !PyList_Check(args[4]) || !PyList_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "chunk_header(body, cls, compressions, encryptions, dedups, flags)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0)
        return NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    PyObject *result = NULL;
    if (view.len < CHUNK_HEADER_LEN)
        goto none;
    uint64_t plain = load_u32le(b + 16), stored = load_u32le(b + 20);
    unsigned comp = b[24], enc = b[26], flags = b[27], dedup = b[28];
    if ((Py_ssize_t)comp >= PyList_GET_SIZE(args[2]) || (Py_ssize_t)enc >= PyList_GET_SIZE(args[3])
            || (Py_ssize_t)dedup >= PyList_GET_SIZE(args[4]) || (Py_ssize_t)flags >= PyList_GET_SIZE(args[5])
            || plain > MAX_CHUNK || stored > MAX_CHUNK + 64 || (flags & CHUNK_DUPLICATE && stored))
        goto none;
    PyObject *items[14];
    items[0] = PyLong_FromUnsignedLong(load_u32le(b));
    items[1] = PyLong_FromUnsignedLong(load_u32le(b + 4));
    items[2] = PyLong_FromUnsignedLongLong(load_u64le(b + 8));
    items[3] = PyLong_FromUnsignedLongLong(plain);
    items[4] = PyLong_FromUnsignedLongLong(stored);
    items[5] = Py_NewRef(PyList_GET_ITEM(args[2], comp));
    items[6] = PyLong_FromLong((signed char)b[25]);
    items[7] = Py_NewRef(PyList_GET_ITEM(args[3], enc));
    items[8] = Py_NewRef(PyList_GET_ITEM(args[5], flags));
    items[9] = Py_NewRef(PyList_GET_ITEM(args[4], dedup));
    if (flags & CHUNK_DUPLICATE) {
        /* The nonce field holds the chunk repeated: (object index, chunk seq). */
        items[10] = PyBytes_FromStringAndSize(NULL, 12);
        if (items[10] != NULL)
            memset(PyBytes_AS_STRING(items[10]), 0, 12);
        items[13] = Py_BuildValue("(kk)", (unsigned long)load_u32le(b + 32), (unsigned long)load_u32le(b + 36));
    } else {
        items[10] = PyBytes_FromStringAndSize((const char *)b + 32, 12);
        items[13] = Py_NewRef(Py_None);
    }
    items[11] = PyBytes_FromStringAndSize((const char *)b + 48, 16);
    items[12] = PyBytes_FromStringAndSize((const char *)b + 64, 32);
    result = new_tuple_of((PyTypeObject *)args[1], items, 14);
    goto done;
none:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(chunk_footer_doc,
"chunk_footer(body, cls) -> cls | None\n\n"
"ChunkFooter.unpack(body) (cls is ChunkFooter); None for a body shorter than 48 bytes.");

PyObject *
accel_chunk_footer(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "chunk_footer(body, cls)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0)
        return NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    PyObject *result;
    if (view.len < CHUNK_FOOTER_LEN) {
        result = Py_NewRef(Py_None);
    } else {
        PyObject *items[5] = {
            PyLong_FromUnsignedLong(load_u32le(b)), PyLong_FromUnsignedLong(load_u32le(b + 4)),
            PyLong_FromUnsignedLong(load_u32le(b + 8)), PyBytes_FromStringAndSize((const char *)b + 16, 16),
            PyBytes_FromStringAndSize((const char *)b + 32, 16)};
        result = new_tuple_of((PyTypeObject *)args[1], items, 5);
    }
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(make_doc,
"make(cls, *values) -> cls instance\n\n"
"An instance of the frozen slotted dataclass cls with its fields (cls.__slots__, in order)\n"
"set to values, made as its __init__ makes it (object.__new__, then object.__setattr__ of each\n"
"field) without running Python code: for classes without __post_init__ or default factories.\n"
"Raises TypeError when the number of values is not the number of slots.");

PyObject *
accel_make(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 1 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "make(cls, *values)");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    PyObject *slots = PyObject_GetAttr(args[0], slots_name);
    if (slots == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "make: %s is not a slotted class", cls->tp_name);
        }
        return NULL;
    }
    PyObject *obj = NULL;
    if (!PyTuple_Check(slots) || PyTuple_GET_SIZE(slots) != nargs - 1) {
        PyErr_Format(PyExc_TypeError, "make: %s takes %zd values, got %zd", cls->tp_name,
                     PyTuple_Check(slots) ? PyTuple_GET_SIZE(slots) : (Py_ssize_t)-1, nargs - 1);
        goto done;
    }
    obj = PyBaseObject_Type.tp_new(cls, empty_tuple, NULL);
    if (obj == NULL)
        goto done;
    for (Py_ssize_t i = 1; i < nargs; i++) {
        if (PyObject_GenericSetAttr(obj, PyTuple_GET_ITEM(slots, i - 1), args[i]) != 0) {
            Py_CLEAR(obj);
            goto done;
        }
    }
done:
    Py_DECREF(slots);
    return obj;
}

PyMethodDef accel_records_methods[] = {
    {"chunk_header", (PyCFunction)(void (*)(void))accel_chunk_header, METH_FASTCALL, chunk_header_doc},
    {"chunk_footer", (PyCFunction)(void (*)(void))accel_chunk_footer, METH_FASTCALL, chunk_footer_doc},
    {"make", (PyCFunction)(void (*)(void))accel_make, METH_FASTCALL, make_doc},
    {"record_spans", accel_record_spans, METH_O, record_spans_doc},
    {NULL, NULL, 0, NULL},
};
