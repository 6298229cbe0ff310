/* Copying bytes and computing their xxh3-128 in one pass (docs/format.md section 5.4).
 *
 * Packing a chunk copies its stored bytes into superblocks and hashes them; reading an lz4
 * chunk joins its pieces and hashes them. Done one after the other, the hash reads back from
 * cache what the copy brought in, and while it computes no load is outstanding: the copy of
 * bytes cold in memory and the hash's arithmetic take turns. accel_move_hashed() interleaves
 * them a kilobyte at a time, the hash's own block, with the source prefetched a few
 * kilobytes ahead: memory keeps streaming while the hash runs, and the hash reads its block
 * from the first-level cache. The digest is XXH3_128bits() of the bytes, by the library's own
 * inline code (the long-input loop of xxhash.h, whose accumulate and scramble steps run here
 * on 1 KiB blocks as they arrive); tests check it against python-xxhash for every length.
 *
 * The AVX2 kernel is compiled with a target attribute and chosen when the module is loaded
 * (as libxxhash's dispatcher does); without AVX2 the same code runs on xxhash.h's default
 * steps (SSE2 on x86-64).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define XXH_DISPATCH_AVX2 1
#define XXH_TARGET_AVX2 __attribute__((__target__("avx2")))
#define HAVE_AVX2_KERNEL 1
#include <immintrin.h>
#endif
#define XXH_INLINE_ALL /* the long-input steps are internal to xxhash.h */
#include <xxhash.h>

#include "_accel_xxh.h"

#define BLOCK 1024 /* the hash's block: 16 stripes of 64 bytes, then a scramble */
#define STRIPE 64
#define SECRET_SIZE sizeof(XXH3_kSecret)
/* How far ahead of the copy the source is prefetched: enough for memory's latency at the
 * hash's pace, few enough lines to stay within the core's outstanding misses. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 2048
#endif

/* Perform the moves that cover bytes [from, to) of the concatenation (cursor: move index and
 * bytes of it done so far). */
static inline __attribute__((always_inline)) void
advance(const AccelMove *moves, size_t *index, size_t *done, size_t from, size_t to)
{
    size_t left = to - from;
    while (left > 0) {
        const AccelMove *m = &moves[*index];
        size_t k = m->len - *done < left ? m->len - *done : left;
        for (size_t line = 0; line < k; line += 64)
            __builtin_prefetch(m->src + *done + line + PREFETCH_AHEAD);
        memcpy(m->dst + *done, m->src + *done, k);
        *done += k;
        left -= k;
        if (*done == m->len) {
            (*index)++;
            *done = 0;
        }
    }
}

/* XXH3_hashLong_internal_loop and XXH3_hashLong_128b_internal of xxhash.h, the moves of each
 * block performed right before it is hashed. */
static inline __attribute__((always_inline)) XXH128_hash_t
move_hashed(const unsigned char *bytes, size_t len, const AccelMove *moves, XXH3_f_accumulate_512 f_acc,
            XXH3_f_scrambleAcc f_scramble)
{
    const unsigned char *secret = XXH3_kSecret;
    XXH_ALIGN(XXH_ACC_ALIGN) xxh_u64 acc[XXH_ACC_NB] = XXH3_INIT_ACC;
    size_t index = 0, done = 0;
    size_t const blocks = (len - 1) / BLOCK;
    for (size_t n = 0; n < blocks; n++) {
        advance(moves, &index, &done, n * BLOCK, (n + 1) * BLOCK);
        XXH3_accumulate(acc, bytes + n * BLOCK, secret, BLOCK / STRIPE, f_acc);
        f_scramble(acc, secret + SECRET_SIZE - STRIPE);
    }
    advance(moves, &index, &done, blocks * BLOCK, len);
    XXH3_accumulate(acc, bytes + blocks * BLOCK, secret, ((len - 1) - BLOCK * blocks) / STRIPE, f_acc);
    f_acc(acc, bytes + len - STRIPE, secret + SECRET_SIZE - STRIPE - XXH_SECRET_LASTACC_START);
    XXH128_hash_t h;
    h.low64 = XXH3_mergeAccs(acc, secret + XXH_SECRET_MERGEACCS_START, (xxh_u64)len * XXH_PRIME64_1);
    h.high64 = XXH3_mergeAccs(acc, secret + SECRET_SIZE - sizeof acc - XXH_SECRET_MERGEACCS_START,
                              ~((xxh_u64)len * XXH_PRIME64_2));
    return h;
}

#ifdef HAVE_AVX2_KERNEL
static XXH_TARGET_AVX2 XXH128_hash_t
move_hashed_avx2(const unsigned char *bytes, size_t len, const AccelMove *moves)
{
    return move_hashed(bytes, len, moves, XXH3_accumulate_512_avx2, XXH3_scrambleAcc_avx2);
}
#endif

static XXH128_hash_t
move_hashed_default(const unsigned char *bytes, size_t len, const AccelMove *moves)
{
    return move_hashed(bytes, len, moves, XXH3_accumulate_512, XXH3_scrambleAcc);
}

static int avx2; /* set once by accel_xxh_init, read by any thread after */

void
accel_xxh_init(void)
{
#ifdef HAVE_AVX2_KERNEL
    /* PIPEVAULT_ACCEL_NO_AVX2 (any value) runs the kernel without AVX2: how the tests cover it
     * on machines that have it. */
    avx2 = __builtin_cpu_supports("avx2") && getenv("PIPEVAULT_ACCEL_NO_AVX2") == NULL;
#endif
}

void
accel_move_hashed(const unsigned char *bytes, size_t len, const AccelMove *moves, unsigned char digest[16])
{
    XXH128_hash_t h;
    if (len <= XXH3_MIDSIZE_MAX) {
        /* Short inputs have their own algorithms: copy, then hash. */
        size_t index = 0, done = 0;
        advance(moves, &index, &done, 0, len);
        h = XXH3_128bits(bytes, len);
    }
#ifdef HAVE_AVX2_KERNEL
    else if (avx2)
        h = move_hashed_avx2(bytes, len, moves);
#endif
    else
        h = move_hashed_default(bytes, len, moves);
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, h);
    memcpy(digest, canonical.digest, 16);
}
