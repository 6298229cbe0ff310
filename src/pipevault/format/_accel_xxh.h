/* _accel_xxh.c: copying bytes and hashing them in one pass. A header of its own, without Python:
 * _accel_xxh.c compiles xxhash.h's inline implementation, which must not meet the declarations
 * of the linked libxxhash that the other units include. */
#ifndef PIPEVAULT_ACCEL_XXH_H
#define PIPEVAULT_ACCEL_XXH_H

#include <stddef.h>

/* len bytes from src to dst. */
typedef struct {
    const unsigned char *src;
    unsigned char *dst;
    size_t len;
} AccelMove;

/* Perform moves, in order, and write the canonical xxh3-128 (XXH3_128bits) of the bytes they
 * move into digest. Those bytes, concatenated, are bytes[:len]: either every move's source or
 * every move's destination lies there, in order (a scatter from one buffer, or a gather into
 * one); the moves' lengths add up to len. Needs no Python and no GIL. */
/* Chooses the kernel for this CPU; called once when the module is loaded. */
void accel_xxh_init(void);

void accel_move_hashed(const unsigned char *bytes, size_t len, const AccelMove *moves, unsigned char digest[16]);

#endif
