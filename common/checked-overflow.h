/* checked-overflow.h -- arithmetic on values read from files or the wire.
 * Each returns true when the result overflowed (and *r is then unusable). */
#ifndef COMMON_CHECKED_OVERFLOW_H
#define COMMON_CHECKED_OVERFLOW_H
#define ADD_OVERFLOW(a, b, r) __builtin_add_overflow ((a), (b), (r))
#define MUL_OVERFLOW(a, b, r) __builtin_mul_overflow ((a), (b), (r))
#define SUB_OVERFLOW(a, b, r) __builtin_sub_overflow ((a), (b), (r))
#endif
