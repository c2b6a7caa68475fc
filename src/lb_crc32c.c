/* lb_crc32c.c -- CRC-32C, by the SSE 4.2 crc32 instruction when the CPU
 * has it, else by a table (lb_crc32c.h).  The instruction has a latency of
 * three cycles and a throughput of one: three independent streams over
 * thirds of a block keep it busy, and their CRCs are joined by shifting
 * (multiplying by x^(8*len) mod P, by a table of the zero operator). */
#include "lb_crc32c.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82f63b78u            /* reflected Castagnoli polynomial */
#define BLOCK 8192                  /* bytes per stream in a 3-way block */

static uint32_t table[8][256];
static uint32_t shift_block[4][256];    /* x^(8*BLOCK) applied to a CRC */
static int hw;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* crc * x^(8*len) mod P for the zero-filled message: the table form of the
 * operator, built by running the bit-wise CRC over len zero bytes. */
static uint32_t zeros_bitwise(uint32_t crc, size_t len) {
    size_t i;
    int k;
    for (i = 0; i < len; i++)
        for (k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ POLY : crc >> 1;
    return crc;
}

static void init(void) {
    uint32_t i, c;
    int k;
    for (i = 0; i < 256; i++) {
        c = i;
        for (k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (i = 0; i < 256; i++)
        for (k = 1; k < 8; k++) table[k][i] = (table[k - 1][i] >> 8) ^ table[0][table[k - 1][i] & 0xff];
    for (k = 0; k < 4; k++)
        for (i = 0; i < 256; i++) shift_block[k][i] = zeros_bitwise(i << (8 * k), BLOCK);
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    hw = __builtin_cpu_supports("sse4.2") != 0;
#endif
}

static uint32_t shift(uint32_t crc) {
    return shift_block[0][crc & 0xff] ^ shift_block[1][(crc >> 8) & 0xff]
         ^ shift_block[2][(crc >> 16) & 0xff] ^ shift_block[3][crc >> 24];
}

static uint32_t sw(uint32_t crc, const unsigned char *p, size_t n) {
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= crc;
        crc = table[7][v & 0xff] ^ table[6][(v >> 8) & 0xff] ^ table[5][(v >> 16) & 0xff]
            ^ table[4][(v >> 24) & 0xff] ^ table[3][(v >> 32) & 0xff] ^ table[2][(v >> 40) & 0xff]
            ^ table[1][(v >> 48) & 0xff] ^ table[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("sse4.2")))
static uint32_t hw_run(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c0 = crc;
    while (n >= 3 * BLOCK) {        /* three streams, joined by shifting */
        uint64_t c1 = 0, c2 = 0, a, b, d;
        size_t i;
        for (i = 0; i < BLOCK; i += 8) {
            memcpy(&a, p + i, 8);
            memcpy(&b, p + BLOCK + i, 8);
            memcpy(&d, p + 2 * BLOCK + i, 8);
            c0 = __builtin_ia32_crc32di(c0, a);
            c1 = __builtin_ia32_crc32di(c1, b);
            c2 = __builtin_ia32_crc32di(c2, d);
        }
        c0 = shift(shift((uint32_t)c0) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 3 * BLOCK;
        n -= 3 * BLOCK;
    }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c0 = __builtin_ia32_crc32di(c0, v);
        p += 8;
        n -= 8;
    }
    while (n--) c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
    return (uint32_t)c0;
}
#endif

uint32_t lb_crc32c(uint32_t crc, const void *p, size_t n) {
    pthread_once(&once, init);
    crc = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
    if (hw) return ~hw_run(crc, p, n);
#endif
    return ~sw(crc, p, n);
}

int lb_crc32c_hw(void) {
    pthread_once(&once, init);
    return hw;
}
