/* pbs-errors.h -- the calling thread's error state (errors.c), set by
 * every layer of pbsproto; not installed. */
#ifndef PBS_ERRORS_H
#define PBS_ERRORS_H

#include <stdbool.h>

#include "pbsproto.h"

/* Error state (errors.c).  Only the function that detects a problem sets
 * it; callers pass -1 up unchanged.  HTTP_STATUS 0 for local errors. */
__attribute__ ((format (printf, 2, 3))) void pbs__set_error (int errnum,
                                                             const char *fmt,
                                                             ...);
__attribute__ ((format (printf, 3, 4))) void
pbs__set_http_error (int http_status, int errnum, const char *fmt, ...);

/* How many errors this thread has set: a layer that keeps detail of its
 * last error beside the message (pbs_ds_error_context) tells by it whether
 * that error is still the current one. */
unsigned long pbs__error_serial (void);

/* Free what one entry of a snapshot list holds and zero it
 * (snapshot-list.c). */
void pbs__snapshot_clear (struct pbs_snapshot *s);

#endif
