/* byteorder.h -- load/store integers from byte buffers.
 * qcow2 is big-endian, PBS formats are little-endian; we never cast packed
 * structs over file data, we read each field at its offset. */
#ifndef COMMON_BYTEORDER_H
#define COMMON_BYTEORDER_H
#include <stdint.h>

static inline uint16_t load_be16 (const uint8_t *p)
{ return (uint16_t) ((p[0] << 8) | p[1]); }
static inline uint32_t load_be32 (const uint8_t *p)
{ return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3]; }
static inline uint64_t load_be64 (const uint8_t *p)
{ return ((uint64_t) load_be32 (p) << 32) | load_be32 (p + 4); }
static inline uint32_t load_le32 (const uint8_t *p)
{ return ((uint32_t) p[3] << 24) | ((uint32_t) p[2] << 16) | ((uint32_t) p[1] << 8) | p[0]; }
static inline uint64_t load_le64 (const uint8_t *p)
{ return ((uint64_t) load_le32 (p + 4) << 32) | load_le32 (p); }
static inline void store_be32 (uint8_t *p, uint32_t v)
{ p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static inline void store_be64 (uint8_t *p, uint64_t v)
{ store_be32 (p, v >> 32); store_be32 (p + 4, (uint32_t) v); }
static inline void store_le32 (uint8_t *p, uint32_t v)
{ p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static inline void store_le64 (uint8_t *p, uint64_t v)
{ store_le32 (p, (uint32_t) v); store_le32 (p + 4, v >> 32); }

#endif
