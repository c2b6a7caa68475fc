/* test_crc32c.c -- CRC-32C (lb_crc32c.c) and the lb-crc32c composite.
 *
 *   build/lua5.4/tests/test_crc32c
 *
 * The check value and RFC 3720's zero vector; random buffers of every
 * length around the 3-way block (3 x 8192) against a bit-by-bit reference,
 * whole and split at every kind of offset; the composite of S3-style part
 * CRCs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb_crc32c.h"
#include "lb_s3.h"
#include "lb_test.h"

static uint32_t reference(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    int k;
    while (n--) {
        c ^= *p++;
        for (k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

int main(void) {
    static const size_t lens[] = { 0, 1, 7, 8, 9, 63, 64, 65, 8191, 24575, 24576, 24577, 24583, 49152,
                                   49159, 100003 };
    unsigned char zeros[32] = { 0 }, *buf = malloc(100003);
    char out[32];
    uint32_t parts[2] = { 0x11223344u, 0xaabbccddu };
    size_t i, j;
    CHECK(lb_crc32c(0, "123456789", 9) == 0xe3069283u);
    CHECK(lb_crc32c(0, zeros, 32) == 0x8a9136aau);
    CHECK(lb_crc32c(0, "", 0) == 0);
    srand(7);
    for (i = 0; i < 100003; i++) buf[i] = (unsigned char)rand();
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint32_t want = reference(buf, lens[i]);
        CHECK(lb_crc32c(0, buf, lens[i]) == want);
        for (j = 0; j <= lens[i]; j += lens[i] / 7 + 1)   /* continued across a split */
            CHECK(lb_crc32c(lb_crc32c(0, buf, j), buf + j, lens[i] - j) == want);
    }
    printf("test_crc32c: hardware path %s\n", lb_crc32c_hw() ? "on" : "off");
    lb_s3_crc_composite(parts, 2, out, sizeof out);
    CHECK_STR("b5c6841a-2", out);
    lb_s3_crc_composite(parts, 0, out, sizeof out);
    CHECK_STR("00000000-0", out);
    free(buf);
    return lb_test_report("crc32c");
}
