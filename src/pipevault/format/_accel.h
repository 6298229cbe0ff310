/* Shared by the compiled parts of pipevault.format._accel (_accel.c, _accel_fields.c,
 * _accel_records.c). */
#ifndef PIPEVAULT_ACCEL_H
#define PIPEVAULT_ACCEL_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

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

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Copy n bytes (a few KiB, right before they are hashed). A plain vector loop: glibc's memcpy
 * takes "rep movsb" for copies of this size, and gcc inlines a bounded memcpy as "rep movsq";
 * both measured 5-9 % slower here (AMD EPYC). */
static inline void
accel_copy(unsigned char *dst, const unsigned char *src, size_t n)
{
#if defined(__SSE2__)
    for (; n >= 64; n -= 64, dst += 64, src += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)src), b = _mm_loadu_si128((const __m128i *)(src + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(src + 32)), d = _mm_loadu_si128((const __m128i *)(src + 48));
        _mm_storeu_si128((__m128i *)dst, a);
        _mm_storeu_si128((__m128i *)(dst + 16), b);
        _mm_storeu_si128((__m128i *)(dst + 32), c);
        _mm_storeu_si128((__m128i *)(dst + 48), d);
    }
#endif
    memcpy(dst, src, n);
}

/* _accel_fields.c: field lists (docs/format.md section 4). */
int accel_fields_init(void);
extern PyMethodDef accel_fields_methods[];

/* _accel_records.c: record walk, chunk headers and footers, frozen dataclasses. */
int accel_records_init(void);
extern PyMethodDef accel_records_methods[];

/* _accel.c: xxh3-64 of buf[:56] and of buf[start:end] without the stored bytes of its DATA
 * records (the superblock checksum, docs/format.md section 2). */
uint64_t accel_superblock_checksum(const unsigned char *buf, Py_ssize_t start, Py_ssize_t end);

/* _accel_plain.c: whole untransformed chunks. */
extern PyMethodDef accel_plain_methods[];

/* _accel_codec.c: compressed chunks' stored bytes to plaintext. */
extern PyMethodDef accel_codec_methods[];

#endif
