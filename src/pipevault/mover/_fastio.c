/* pipevault.mover._fastio: a restore's small files created whole, attributes and all, with the
 * interpreter lock released for the whole batch.
 *
 * The Python code (write_behind.write_small, paths.open_new_file) is the specification and
 * the fallback; this does the same system calls in the same order. Written in C because a
 * restore of many small files made seven calls per file from Python in each writer thread,
 * and each call gave the interpreter lock up and waited to get it back from the thread that
 * parses the events: the writer threads ran one at a time with it instead of beside it.
 *
 * write_files(files) -> list
 *   files: a list of (dir fd, name (str, file-system encoded here), fresh (bool), data (a
 *   buffer), size, mode, uid, gid, atime_ns, mtime_ns, xattrs ((bytes name, bytes value),
 *   ...)). For each file, in order: None when it was written, else (kind, errno):
 *   kind 1: a directory is in the way (errno 0); kind 2: the file could not be created;
 *   kind 3: writing it or setting an attribute failed. The descriptors are the caller's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define IN_THE_WAY 1
#define NOT_CREATED 2
#define NOT_WRITTEN 3

typedef struct {
    int dfd;
    int fresh;
    PyObject *name;       /* bytes, owned */
    Py_buffer data;
    long long size;
    unsigned int mode;
    long long uid, gid;
    long long atime_ns, mtime_ns;
    PyObject *xattrs;     /* the tuple, borrowed from the item (kept alive by the list) */
    int kind, err;
} File;

static void release(File *files, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(files[i].name);
        if (files[i].data.obj != NULL) PyBuffer_Release(&files[i].data);
    }
    PyMem_Free(files);
}

static int write_all(int fd, const char *p, Py_ssize_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, (size_t)n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= k;
    }
    return 0;
}

/* One file, as paths.open_new_file then write_behind.write_small do it (no interpreter lock:
 * xattrs are read from objects the caller keeps alive and nobody else changes). */
static void write_one(File *f, uid_t euid, gid_t egid, const char **xnames, const char **xvalues,
                      Py_ssize_t *xlens, Py_ssize_t nx) {
    const char *name = PyBytes_AS_STRING(f->name);
    int flags = O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC;
    if (f->fresh) {
        flags |= O_EXCL; /* our own new directory: nothing can be in the way */
    } else {
        struct stat st;
        if (fstatat(f->dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISDIR(st.st_mode)) {
                f->kind = IN_THE_WAY;
                return;
            }
            if ((!S_ISREG(st.st_mode) || st.st_nlink > 1) && unlinkat(f->dfd, name, 0) != 0) {
                f->kind = NOT_WRITTEN;
                f->err = errno;
                return;
            }
        } else if (errno != ENOENT) {
            f->kind = NOT_WRITTEN;
            f->err = errno;
            return;
        }
        flags |= O_TRUNC;
    }
    int fd = openat(f->dfd, name, flags, 0600);
    if (fd < 0) {
        f->kind = NOT_CREATED;
        f->err = errno;
        return;
    }
    int failed = write_all(fd, (const char *)f->data.buf, f->data.len);
    if (!failed && f->data.len != f->size) failed = ftruncate(fd, (off_t)f->size);
    if (!failed) {
        for (Py_ssize_t k = 0; k < nx; k++)
            (void)fsetxattr(fd, xnames[k], xvalues[k], (size_t)xlens[k], 0); /* as the Python code: a small file keeps its data */
        if (!((uid_t)f->uid == euid && (gid_t)f->gid == egid)
            && fchown(fd, (uid_t)f->uid, (gid_t)f->gid) != 0 && errno != EPERM && errno != EACCES)
            failed = -1;
    }
    if (!failed) failed = fchmod(fd, (mode_t)(f->mode & 07777));
    if (!failed) {
        struct timespec ts[2] = {{(time_t)(f->atime_ns / 1000000000LL), (long)(f->atime_ns % 1000000000LL)},
                                 {(time_t)(f->mtime_ns / 1000000000LL), (long)(f->mtime_ns % 1000000000LL)}};
        if (ts[0].tv_nsec < 0) { ts[0].tv_sec -= 1; ts[0].tv_nsec += 1000000000L; }
        if (ts[1].tv_nsec < 0) { ts[1].tv_sec -= 1; ts[1].tv_nsec += 1000000000L; }
        failed = futimens(fd, ts);
    }
    if (failed) {
        f->kind = NOT_WRITTEN;
        f->err = errno;
    }
    close(fd);
}

static PyObject *write_files(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "write_files takes a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    File *files = PyMem_Calloc(n ? (size_t)n : 1, sizeof(File));
    if (files == NULL) return PyErr_NoMemory();
    Py_ssize_t total_x = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        File *f = &files[i];
        PyObject *name;
        int fresh;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(arg, i), "iUpy*LILLLLO!", &f->dfd, &name, &fresh, &f->data, &f->size,
                              &f->mode, &f->uid, &f->gid, &f->atime_ns, &f->mtime_ns, &PyTuple_Type, &f->xattrs)) {
            release(files, i + 1);
            return NULL;
        }
        f->fresh = fresh;
        f->name = PyUnicode_EncodeFSDefault(name);
        if (f->name == NULL) {
            release(files, i + 1);
            return NULL;
        }
        if (f->size < 0 || strlen(PyBytes_AS_STRING(f->name)) != (size_t)PyBytes_GET_SIZE(f->name)) {
            PyErr_SetString(PyExc_ValueError, f->size < 0 ? "negative size" : "embedded null byte in a name");
            release(files, i + 1);
            return NULL;
        }
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(f->xattrs); k++) {
            PyObject *pair = PyTuple_GET_ITEM(f->xattrs, k);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(pair, 0))
                || !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
                PyErr_SetString(PyExc_TypeError, "xattrs must be (bytes, bytes) pairs");
                release(files, i + 1);
                return NULL;
            }
        }
        total_x += PyTuple_GET_SIZE(f->xattrs);
    }
    /* The xattrs' pointers, gathered while the lock is held (bytes objects kept by the list). */
    const char **xnames = PyMem_Calloc(total_x ? (size_t)total_x : 1, sizeof(char *));
    const char **xvalues = PyMem_Calloc(total_x ? (size_t)total_x : 1, sizeof(char *));
    Py_ssize_t *xlens = PyMem_Calloc(total_x ? (size_t)total_x : 1, sizeof(Py_ssize_t));
    if (xnames == NULL || xvalues == NULL || xlens == NULL) {
        PyMem_Free(xnames);
        PyMem_Free(xvalues);
        PyMem_Free(xlens);
        release(files, n);
        return PyErr_NoMemory();
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(files[i].xattrs); k++, at++) {
            PyObject *pair = PyTuple_GET_ITEM(files[i].xattrs, k);
            xnames[at] = PyBytes_AS_STRING(PyTuple_GET_ITEM(pair, 0));
            xvalues[at] = PyBytes_AS_STRING(PyTuple_GET_ITEM(pair, 1));
            xlens[at] = PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 1));
        }
    }
    uid_t euid = geteuid();
    gid_t egid = getegid();
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t base = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t nx = PyTuple_GET_SIZE(files[i].xattrs); /* reads a field: no lock needed */
        write_one(&files[i], euid, egid, xnames + base, xvalues + base, xlens + base, nx);
        base += nx;
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(xnames);
    PyMem_Free(xvalues);
    PyMem_Free(xlens);
    PyObject *out = PyList_New(n);
    if (out != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *r = files[i].kind ? Py_BuildValue("(ii)", files[i].kind, files[i].err) : Py_NewRef(Py_None);
            if (r == NULL) {
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(out, i, r);
        }
    }
    release(files, n);
    return out;
}

static PyMethodDef methods[] = {
    {"write_files", write_files, METH_O,
     "write_files(files) -> list: create small files whole with their attributes (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pipevault.mover._fastio",
    "A restore's small files written in C with the interpreter lock released.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastio(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "IN_THE_WAY", IN_THE_WAY) < 0
        || PyModule_AddIntConstant(m, "NOT_CREATED", NOT_CREATED) < 0
        || PyModule_AddIntConstant(m, "NOT_WRITTEN", NOT_WRITTEN) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
