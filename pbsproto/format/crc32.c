/* crc32.c -- the DataBlob CRC (zlib's CRC-32, docs/pbs-protocol.md §5.2)
 * at memory speed where the CPU can.
 *
 * Restore, check and the nbdkit plugin verify the CRC of every chunk they
 * read; Debian's zlib 1.2.13 computes it 8 bytes at a time (about 7 GB/s
 * here, a fifth of restore's CPU time beside SHA-256), and neither zlib nor
 * OpenSSL offers a carry-less-multiply version.  This is the folding
 * method of Intel's white paper "Fast CRC Computation for Generic
 * Polynomials Using PCLMULQDQ Instruction" (Gopal et al., 2009) for the
 * bit-reflected polynomial 0xedb88320: four 128-bit lanes are folded
 * 64 bytes at a time, then into one lane, then reduced to 32 bits with a
 * Barrett reduction.  The constants are the paper's fold multipliers
 * (powers of x modulo P, bit-reflected) for that polynomial; the unit test
 * compares lengths and alignments with zlib.  Short inputs and the tail
 * below 16 bytes go to zlib, as does a CPU without PCLMULQDQ and SSE4.1. */
#include <stdint.h>
#include <zlib.h>

#include "pbs-crypto.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_CLMUL 1

/* Folding across 64 bytes. */
#define K1 0x154442bd4ull
#define K2 0x1c6e41596ull
/* Folding across 16 bytes. */
#define K3 0x1751997d0ull
#define K4 0x0ccaa009eull
/* 64 bits down to 32. */
#define K5 0x163cd6124ull
/* P (reflected, with its x^32 term) and the Barrett quotient. */
#define POLY 0x1db710641ull
#define MU 0x1f7011641ull

__attribute__ ((target ("pclmul,sse4.1"))) static inline __m128i
fold (__m128i x, __m128i k)
{
  return _mm_xor_si128 (_mm_clmulepi64_si128 (x, k, 0x00),
                        _mm_clmulepi64_si128 (x, k, 0x11));
}

/* CRC state C (not inverted) over LEN bytes, LEN >= 64 and a multiple of
 * 16. */
__attribute__ ((target ("pclmul,sse4.1"))) static uint32_t
crc_clmul (uint32_t c, const uint8_t *p, size_t len)
{
  const __m128i k12 = _mm_set_epi64x ((long long) K2, (long long) K1);
  const __m128i k34 = _mm_set_epi64x ((long long) K4, (long long) K3);
  const __m128i k5 = _mm_set_epi64x (0, (long long) K5);
  const __m128i pm = _mm_set_epi64x ((long long) MU, (long long) POLY);
  const __m128i mask32 = _mm_set_epi32 (0, 0, 0, -1);
  __m128i x0, x1, x2, x3, t;

  x0 = _mm_xor_si128 (_mm_loadu_si128 ((const __m128i *) p),
                      _mm_cvtsi32_si128 ((int) c));
  x1 = _mm_loadu_si128 ((const __m128i *) (p + 16));
  x2 = _mm_loadu_si128 ((const __m128i *) (p + 32));
  x3 = _mm_loadu_si128 ((const __m128i *) (p + 48));
  p += 64;
  len -= 64;
  while (len >= 64) {
    x0 = _mm_xor_si128 (fold (x0, k12), _mm_loadu_si128 ((const __m128i *) p));
    x1 = _mm_xor_si128 (fold (x1, k12),
                        _mm_loadu_si128 ((const __m128i *) (p + 16)));
    x2 = _mm_xor_si128 (fold (x2, k12),
                        _mm_loadu_si128 ((const __m128i *) (p + 32)));
    x3 = _mm_xor_si128 (fold (x3, k12),
                        _mm_loadu_si128 ((const __m128i *) (p + 48)));
    p += 64;
    len -= 64;
  }
  x0 = _mm_xor_si128 (fold (x0, k34), x1);
  x0 = _mm_xor_si128 (fold (x0, k34), x2);
  x0 = _mm_xor_si128 (fold (x0, k34), x3);
  while (len >= 16) {
    x0 = _mm_xor_si128 (fold (x0, k34), _mm_loadu_si128 ((const __m128i *) p));
    p += 16;
    len -= 16;
  }
  /* 128 bits to 64. */
  t = _mm_clmulepi64_si128 (x0, k34, 0x10);
  x0 = _mm_xor_si128 (_mm_srli_si128 (x0, 8), t);
  /* 64 bits to 32. */
  t = _mm_srli_si128 (x0, 4);
  x0 = _mm_clmulepi64_si128 (_mm_and_si128 (x0, mask32), k5, 0x00);
  x0 = _mm_xor_si128 (x0, t);
  /* Barrett reduction. */
  t = x0;
  x0 = _mm_clmulepi64_si128 (_mm_and_si128 (x0, mask32), pm, 0x10);
  x0 = _mm_clmulepi64_si128 (_mm_and_si128 (x0, mask32), pm, 0x00);
  x0 = _mm_xor_si128 (x0, t);
  return (uint32_t) _mm_extract_epi32 (x0, 1);
}
#endif

uint32_t
pbs__crc32 (uint32_t crc, const uint8_t *p, size_t len)
{
#ifdef HAVE_CLMUL
  /* Below a few hundred bytes the setup costs more than it saves. */
  if (len >= 256 && __builtin_cpu_supports ("pclmul")
      && __builtin_cpu_supports ("sse4.1")) {
    size_t bulk = len & ~(size_t) 15;
    crc = ~crc_clmul (~crc, p, bulk);
    p += bulk;
    len -= bulk;
  }
#endif
  return (uint32_t) crc32_z (crc, p, len);
}
