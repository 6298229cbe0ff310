/* Compiled form of the superblock checksum (docs/format.md section 2).
 *
 * The readable specification is pipevault/format/_superblock.py (data_spans and checksum);
 * this module computes the same value in one call, because the Python walk and the several
 * streaming hash updates cost more per superblock than the bytes they hash. Tests check
 * both give the same checksum for any payload, well-formed or not.
 *
 * The hash itself is not reimplemented: the covered bytes are gathered into one bytes object
 * and handed to xxhash.xxh3_64_intdigest (xxh3 of a concatenation equals the streaming hash of
 * its parts). Only the CPython C API is used; nothing is kept between calls and the GIL is
 * held throughout, so the module is safe wherever the Python code is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CHECKSUM_OFFSET 56
#define RECORD_HEADER_LEN 8
#define TAG_LEN 24
#define TYPE_DATA 0x06

static PyObject *xxh3_64_intdigest;

static uint32_t
load_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Walk the records of buf[start:end] as data_spans does; with out != NULL copy the covered
 * bytes there. Returns the number of payload bytes covered. */
static Py_ssize_t
gather(const unsigned char *buf, Py_ssize_t start, Py_ssize_t end, unsigned char *out)
{
    Py_ssize_t pos = start, from = start, covered = 0;
    while (pos + RECORD_HEADER_LEN <= end) {
        uint32_t length = load_u32le(buf + pos + 4);
        Py_ssize_t next = pos + RECORD_HEADER_LEN + (Py_ssize_t)length;
        if (next > end)
            break; /* the rest of the payload is covered: a damaged length shows as a mismatch */
        if (buf[pos] == TYPE_DATA && length > TAG_LEN) {
            Py_ssize_t lo = pos + RECORD_HEADER_LEN + TAG_LEN;
            if (out != NULL)
                memcpy(out + covered, buf + from, (size_t)(lo - from));
            covered += lo - from;
            from = next;
        }
        pos = next;
    }
    if (out != NULL)
        memcpy(out + covered, buf + from, (size_t)(end - from));
    return covered + (end - from);
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
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t covered = gather(buf, start, end, NULL);
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, CHECKSUM_OFFSET + covered);
    if (bytes == NULL)
        goto done;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(bytes);
    memcpy(out, buf, CHECKSUM_OFFSET);
    gather(buf, start, end, out + CHECKSUM_OFFSET);
    result = PyObject_CallOneArg(xxh3_64_intdigest, bytes);
    Py_DECREF(bytes);
done:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef accel_methods[] = {
    {"checksum", (PyCFunction)(void (*)(void))accel_checksum, METH_FASTCALL, checksum_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef accel_module = {
    PyModuleDef_HEAD_INIT, "pipevault.format._accel",
    "Compiled superblock checksum (see pipevault.format._superblock).", -1, accel_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__accel(void)
{
    PyObject *xxhash = PyImport_ImportModule("xxhash");
    if (xxhash == NULL)
        return NULL;
    xxh3_64_intdigest = PyObject_GetAttrString(xxhash, "xxh3_64_intdigest");
    Py_DECREF(xxhash);
    if (xxh3_64_intdigest == NULL)
        return NULL;
    return PyModule_Create(&accel_module);
}
