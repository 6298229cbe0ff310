/* Compiled field lists (docs/format.md section 4): decode a body into a dict of values, and
 * encode values into a body.
 *
 * The readable specification is pipevault/format/_fields.py (FieldRecord.unpack's loop and
 * _pack). Every archive header and footer of a backup or restore passes here, and the Python
 * loops cost more per record than the bytes they handle. Both functions take the fast, common
 * road only: on anything unusual (a truncated entry, a wrong length, an unknown critical field,
 * a repeated field, bad UTF-8, a value of an unexpected type or out of range) they return None
 * and the Python code runs instead, which raises the precise error or handles the rare case.
 * So the compiled path never decides an error, and it gives exactly the Python result otherwise;
 * tests check both on any input.
 *
 * Kinds are small ints (_fields._KIND_CODES). The GIL is held throughout; nothing is kept
 * between calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_accel.h"

enum { K_U8, K_U32, K_U64, K_I64, K_STR, K_BYTES, K_UUID, K_XATTRS, K_COUNT };
#define CRITICAL 0x8000u
#define ENTRY_LEN 6

static PyObject *uuid_class; /* uuid.UUID */
static PyObject *bytes_kw;   /* ("bytes",) */
static PyObject *empty_args; /* () */

int
accel_fields_init(void)
{
    PyObject *mod = PyImport_ImportModule("uuid");
    if (mod == NULL)
        return -1;
    uuid_class = PyObject_GetAttrString(mod, "UUID");
    Py_DECREF(mod);
    if (uuid_class == NULL)
        return -1;
    bytes_kw = Py_BuildValue("(s)", "bytes");
    empty_args = PyTuple_New(0);
    return bytes_kw == NULL || empty_args == NULL ? -1 : 0;
}

/* The value of one fixed-size or string entry; NULL with no exception set means "not the
 * common case: fall back". */
static PyObject *
decode_value(int kind, const unsigned char *p, Py_ssize_t n)
{
    switch (kind) {
    case K_U8:
        return n == 1 ? PyLong_FromUnsignedLong(p[0]) : NULL;
    case K_U32:
        return n == 4 ? PyLong_FromUnsignedLong(accel_load_u32le(p)) : NULL;
    case K_U64:
        return n == 8 ? PyLong_FromUnsignedLongLong(accel_load_u64le(p)) : NULL;
    case K_I64:
        return n == 8 ? PyLong_FromLongLong((long long)accel_load_u64le(p)) : NULL;
    case K_STR: {
        PyObject *s = PyUnicode_DecodeUTF8((const char *)p, n, NULL);
        if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            PyErr_Clear();
        return s;
    }
    case K_BYTES:
        return PyBytes_FromStringAndSize((const char *)p, n);
    case K_UUID: {
        if (n != 16)
            return NULL;
        PyObject *raw = PyBytes_FromStringAndSize((const char *)p, 16);
        if (raw == NULL)
            return NULL;
        PyObject *args[1] = {raw};
        PyObject *u = PyObject_Vectorcall(uuid_class, args, 0, bytes_kw);
        Py_DECREF(raw);
        return u;
    }
    default:
        return NULL;
    }
}

/* Append one xattr entry (u16 name length, name, value) to the list under name in values. */
static int
add_xattr(PyObject *values, PyObject *name, const unsigned char *p, Py_ssize_t n)
{
    if (n < 2)
        return 1;
    Py_ssize_t nlen = (Py_ssize_t)(p[0] | (p[1] << 8));
    if (2 + nlen > n)
        return 1;
    PyObject *list = PyDict_GetItemWithError(values, name);
    if (list == NULL) {
        if (PyErr_Occurred())
            return -1;
        list = PyList_New(0);
        if (list == NULL || PyDict_SetItem(values, name, list) != 0) {
            Py_XDECREF(list);
            return -1;
        }
        Py_DECREF(list); /* the dict holds it */
    }
    PyObject *pair = Py_BuildValue("(y#y#)", (const char *)p + 2, nlen, (const char *)p + 2 + nlen,
                                   n - 2 - nlen);
    if (pair == NULL)
        return -1;
    int rc = PyList_Append(list, pair);
    Py_DECREF(pair);
    return rc;
}

/* object.__new__(cls) whose __dict__ holds defaults, then values; steals values. */
static PyObject *
as_record(PyTypeObject *cls, PyObject *defaults, PyObject *values)
{
    PyObject *record = PyBaseObject_Type.tp_new(cls, empty_args, NULL);
    PyObject *dict = record != NULL ? PyObject_GenericGetDict(record, NULL) : NULL;
    if (dict == NULL || PyDict_Update(dict, defaults) != 0 || PyDict_Update(dict, values) != 0)
        Py_CLEAR(record);
    Py_XDECREF(dict);
    Py_DECREF(values);
    return record;
}

PyDoc_STRVAR(decode_fields_doc,
"decode_fields(body, table[, cls, defaults]) -> dict | record | None\n\n"
"The values of the field list body: attribute name -> value, as FieldRecord.unpack's loop\n"
"finds them (xattrs as a tuple of (name, value) pairs), defaults not filled in. table[id] is\n"
"(name, kind code) for each known field id, None elsewhere. With cls and defaults (a dict of\n"
"every field's default), the record itself: object.__new__(cls) with defaults, then the\n"
"values, in its __dict__. None when the body is anything but well formed (the Python loop\n"
"then raises the precise error). body is read during the call only.");

PyObject *
accel_decode_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if ((nargs != 2 && nargs != 4) || !PyTuple_Check(args[1]) || (nargs == 4 && (!PyType_Check(args[2])
            || !PyDict_Check(args[3])))) {
        PyErr_SetString(PyExc_TypeError, "decode_fields(body, table: tuple[, cls: type, defaults: dict])");
        return NULL;
    }
    PyObject *table = args[1];
    Py_ssize_t known = PyTuple_GET_SIZE(table);
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0)
        return NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    Py_ssize_t pos = 0, end = view.len;
    int lists = 0;
    PyObject *values = PyDict_New();
    if (values == NULL)
        goto error;
    while (pos < end) {
        if (end - pos < ENTRY_LEN)
            goto fallback;
        unsigned fid = (unsigned)(b[pos] | (b[pos + 1] << 8));
        Py_ssize_t length = (Py_ssize_t)accel_load_u32le(b + pos + 2);
        pos += ENTRY_LEN;
        if (length > end - pos)
            goto fallback;
        unsigned id = fid & CRITICAL ? fid & ~CRITICAL : fid;
        PyObject *entry = (Py_ssize_t)id < known ? PyTuple_GET_ITEM(table, id) : Py_None;
        if (entry == Py_None) {
            if (fid & CRITICAL)
                goto fallback;
            pos += length;
            continue;
        }
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
            PyErr_SetString(PyExc_TypeError, "decode_fields: a table entry is not (name, kind)");
            goto error;
        }
        PyObject *name = PyTuple_GET_ITEM(entry, 0);
        int kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(entry, 1));
        if (kind == -1 && PyErr_Occurred())
            goto error;
        if (kind == K_XATTRS) {
            int rc = add_xattr(values, name, b + pos, length);
            if (rc < 0)
                goto error;
            if (rc > 0)
                goto fallback;
            lists = 1;
            pos += length;
            continue;
        }
        int present = PyDict_Contains(values, name);
        if (present < 0)
            goto error;
        if (present)
            goto fallback;
        PyObject *value = decode_value(kind, b + pos, length);
        if (value == NULL) {
            if (PyErr_Occurred())
                goto error;
            goto fallback;
        }
        int rc = PyDict_SetItem(values, name, value);
        Py_DECREF(value);
        if (rc != 0)
            goto error;
        pos += length;
    }
    if (lists) {
        PyObject *key, *value;
        Py_ssize_t i = 0;
        while (PyDict_Next(values, &i, &key, &value)) {
            if (PyList_CheckExact(value)) {
                PyObject *t = PyList_AsTuple(value);
                /* Replacing the value of an existing key does not disturb PyDict_Next. */
                if (t == NULL || PyDict_SetItem(values, key, t) != 0) {
                    Py_XDECREF(t);
                    goto error;
                }
                Py_DECREF(t);
            }
        }
    }
    PyBuffer_Release(&view);
    if (nargs == 4)
        return as_record((PyTypeObject *)args[2], args[3], values);
    return values;
fallback:
    Py_DECREF(values);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
error:
    Py_XDECREF(values);
    PyBuffer_Release(&view);
    return NULL;
}

/* A growing output buffer. */
typedef struct {
    unsigned char *p;
    Py_ssize_t len, cap;
} Out;

static unsigned char *
out_room(Out *o, Py_ssize_t n)
{
    if (o->len + n > o->cap) {
        Py_ssize_t cap = o->cap * 2 > o->len + n ? o->cap * 2 : o->len + n + 256;
        unsigned char *p = PyMem_Realloc(o->p, (size_t)cap);
        if (p == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        o->p = p;
        o->cap = cap;
    }
    unsigned char *at = o->p + o->len;
    o->len += n;
    return at;
}

/* Write the entry header and room for n value bytes; returns where the value goes. */
static unsigned char *
out_entry(Out *o, unsigned fid, Py_ssize_t n)
{
    unsigned char *at = out_room(o, ENTRY_LEN + n);
    if (at == NULL)
        return NULL;
    at[0] = (unsigned char)fid;
    at[1] = (unsigned char)(fid >> 8);
    accel_store_u32le(at + 2, (uint32_t)n);
    return at + ENTRY_LEN;
}

/* Encode one value; 0 done, 1 fall back, -1 error. */
static int
encode_value(Out *o, unsigned fid, int kind, PyObject *value)
{
    unsigned char *at;
    if (kind <= K_I64) {
        if (!PyLong_Check(value))
            return 1;
        unsigned long long u = 0;
        long long s = 0;
        if (kind == K_I64) {
            s = PyLong_AsLongLong(value);
            u = (unsigned long long)s;
        } else {
            u = PyLong_AsUnsignedLongLong(value);
        }
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return -1;
            PyErr_Clear();
            return 1;
        }
        if ((kind == K_U8 && u > 0xFFu) || (kind == K_U32 && u > 0xFFFFFFFFu))
            return 1;
        Py_ssize_t n = kind == K_U8 ? 1 : kind == K_U32 ? 4 : 8;
        if ((at = out_entry(o, fid, n)) == NULL)
            return -1;
        if (n == 1)
            at[0] = (unsigned char)u;
        else if (n == 4)
            accel_store_u32le(at, (uint32_t)u);
        else
            accel_store_u64le(at, (uint64_t)u);
        return 0;
    }
    const char *p;
    Py_ssize_t n;
    if (kind == K_STR) {
        if (!PyUnicode_CheckExact(value))
            return 1;
        p = PyUnicode_AsUTF8AndSize(value, &n);
        if (p == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
                return -1;
            PyErr_Clear(); /* lone surrogates: the Python code raises */
            return 1;
        }
    } else if (kind == K_BYTES) {
        if (!PyBytes_CheckExact(value))
            return 1;
        p = PyBytes_AS_STRING(value);
        n = PyBytes_GET_SIZE(value);
    } else {
        return 1; /* uuid and anything else: rare, left to the Python code */
    }
    if (n > 0xFFFFFFFFLL)
        return 1;
    if ((at = out_entry(o, fid, n)) == NULL)
        return -1;
    memcpy(at, p, (size_t)n);
    return 0;
}

/* Encode a repeated xattrs field; 0 done, 1 fall back, -1 error. */
static int
encode_xattrs(Out *o, unsigned fid, PyObject *value)
{
    if (!PyTuple_CheckExact(value) && !PyList_CheckExact(value))
        return 1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(value);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(value, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
            return 1;
        PyObject *xname = PyTuple_GET_ITEM(pair, 0), *xvalue = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(xname) || !PyBytes_CheckExact(xvalue))
            return 1;
        Py_ssize_t nn = PyBytes_GET_SIZE(xname), nv = PyBytes_GET_SIZE(xvalue);
        if (nn > 0xFFFF || 2 + nn + nv > 0xFFFFFFFFLL)
            return 1;
        unsigned char *at = out_entry(o, fid, 2 + nn + nv);
        if (at == NULL)
            return -1;
        at[0] = (unsigned char)nn;
        at[1] = (unsigned char)(nn >> 8);
        memcpy(at + 2, PyBytes_AS_STRING(xname), (size_t)nn);
        memcpy(at + 2 + nn, PyBytes_AS_STRING(xvalue), (size_t)nv);
    }
    return 0;
}

PyDoc_STRVAR(encode_fields_doc,
"encode_fields(plan, values, missing) -> bytes | None\n\n"
"The field list of values (attribute name -> value; an absent name takes its default), as\n"
"_fields._pack writes it. plan is a tuple of (name, id, kind code, default) in field order;\n"
"a default that is missing marks a field without one. None when a value is of an unexpected\n"
"type or out of range, or a field without a default is absent (the Python code then encodes\n"
"or raises). values is read during the call only.");

PyObject *
accel_encode_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyTuple_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "encode_fields(plan: tuple, values: dict, missing)");
        return NULL;
    }
    PyObject *plan = args[0], *values = args[1], *missing = args[2];
    Out o = {NULL, 0, 0};
    PyObject *result = NULL;
    if (out_room(&o, 256) == NULL)
        return NULL;
    o.len = 0;
    Py_ssize_t count = PyTuple_GET_SIZE(plan);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *step = PyTuple_GET_ITEM(plan, i);
        if (!PyTuple_Check(step) || PyTuple_GET_SIZE(step) != 4) {
            PyErr_SetString(PyExc_TypeError, "encode_fields: a plan step is not (name, id, kind, default)");
            goto done;
        }
        PyObject *name = PyTuple_GET_ITEM(step, 0), *dflt = PyTuple_GET_ITEM(step, 3);
        unsigned fid = (unsigned)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(step, 1));
        int kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(step, 2));
        if (PyErr_Occurred())
            goto done;
        PyObject *value = PyDict_GetItemWithError(values, name);
        if (value == NULL) {
            if (PyErr_Occurred())
                goto done;
            value = dflt;
        }
        Py_INCREF(value); /* __eq__ may run Python code that drops the dict's reference */
        int same = PyObject_RichCompareBool(value, dflt, Py_EQ);
        int rc = same < 0 ? -1 : same ? (value == missing) : kind == K_XATTRS ? encode_xattrs(&o, fid, value)
                                                                              : encode_value(&o, fid, kind, value);
        Py_DECREF(value);
        if (rc < 0)
            goto done;
        if (rc > 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize((const char *)o.p, o.len);
done:
    PyMem_Free(o.p);
    return result;
}

PyMethodDef accel_fields_methods[] = {
    {"decode_fields", (PyCFunction)(void (*)(void))accel_decode_fields, METH_FASTCALL, decode_fields_doc},
    {"encode_fields", (PyCFunction)(void (*)(void))accel_encode_fields, METH_FASTCALL, encode_fields_doc},
    {NULL, NULL, 0, NULL},
};
