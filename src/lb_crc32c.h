/* lb_crc32c.h -- CRC-32C (Castagnoli, iSCSI; S3's "CRC32C" checksum).
 *
 *   uint32_t c = lb_crc32c(0, buf, n);          start
 *   c = lb_crc32c(c, more, m);                   continue
 *
 * With the CPU's crc32 instruction (SSE 4.2, chosen at run time), three
 * interleaved streams per call for large buffers, else a table.  Thread
 * safe, no allocation.  lb_crc32c(0, "123456789", 9) == 0xE3069283. */
#ifndef LB_CRC32C_H
#define LB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t lb_crc32c(uint32_t crc, const void *p, size_t n);

/* 1 when the hardware path runs on this CPU (benchmarks say which). */
int lb_crc32c_hw(void);

#endif
