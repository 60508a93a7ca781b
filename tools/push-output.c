/* push-output.c -- what push prints when it succeeds: the result as text
 * or JSON, and the local datastore's notes on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "push-run.h"

/* "push: LINE" on stderr for each line of NOTES. */
void
push_print_notes (const char *notes)
{
  const char *e;

  for (; *notes; notes = *e ? e + 1 : e) {
    char *line;
    e = strchr (notes, '\n');
    if (!e)
      e = notes + strlen (notes);
    line = strndup (notes, (size_t) (e - notes));
    if (line)
      cli_cmd_note ("push", "%s", line);
    free (line);
  }
}

/* The layers an archive was made from, oldest first, as given or as
 * found through backing names. */
static json_t *
layers_json (const struct archive *a)
{
  json_t *arr = json_array ();
  size_t i;

  for (i = 0; arr && i < a->ident.n; i++)
    json_array_append_new (arr, json_string_nocheck (a->ident.layer[i].path));
  return arr;
}

void
push_print_result (struct push *p)
{
  char ts[21];
  size_t i, j;

  pbs_time_to_rfc3339 (p->time, ts);
  if (p->skipped) {
    if (p->json) {
      json_t *o = json_pack ("{s:s, s:s, s:b, s:b, s:[]}", "snapshot",
                             p->skipped, "ns", p->ns, "dry_run", p->dry_run,
                             "skipped", 1, "archives");
      char *s = o ? json_dumps (o, JSON_INDENT (2) | JSON_PRESERVE_ORDER)
                  : NULL;
      if (s)
        printf ("%s\n", s);
      free (s);
      json_decref (o);
    }
    else
      printf ("unchanged since %s%s%s: no snapshot made "
              "(--skip-unchanged)\n",
              p->skipped, *p->ns ? " in ns " : "", p->ns);
    return;
  }
  if (p->json) {
    json_t *o, *arr = json_array ();
    for (i = 0; i < p->na; i++) {
      struct archive *a = &p->a[i];
      json_array_append_new (
          arr,
          json_pack ("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, "
                     "s:o, s:o}",
                     "name", a->name, "size", (json_int_t) a->size, "chunks",
                     (json_int_t) a->nchunks, "zero_chunks",
                     (json_int_t) a->zero_chunks, "reused_chunks",
                     (json_int_t) a->reused_chunks, "read_chunks",
                     (json_int_t) a->read_chunks, "read_bytes",
                     (json_int_t) a->read_bytes, "stored_chunks",
                     (json_int_t) a->stored_chunks, "stored_bytes",
                     (json_int_t) a->stored_bytes, "incremental",
                     a->incremental,
                     "reason", a->incremental ? json_null ()
                                              : json_string (a->reason),
                     "layers", layers_json (a)));
    }
    o = json_pack ("{s:s++++, s:s, s:b, s:I, s:o}", "snapshot", p->type,
                   "/", p->id, "/", ts, "ns", p->ns, "dry_run", p->dry_run,
                   "backup_time", (json_int_t) p->time, "archives", arr);
    if (o) {
      char *s = json_dumps (o, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
      if (s)
        printf ("%s\n", s);
      free (s);
    }
    json_decref (o);
    return;
  }
  if (cli_quiet ())
    return;
  printf ("%s%s/%s/%s%s%s\n", p->dry_run ? "would create " : "snapshot ",
          p->type, p->id, ts, *p->ns ? " in ns " : "", p->ns);
  for (i = 0; i < p->na; i++) {
    struct archive *a = &p->a[i];
    printf ("  %s: %llu bytes, %llu chunks: %llu read, %llu reused, %llu "
            "zero; %s %llu chunks (%llu bytes); %s%s",
            a->name, (unsigned long long) a->size,
            (unsigned long long) a->nchunks,
            (unsigned long long) a->read_chunks,
            (unsigned long long) a->reused_chunks,
            (unsigned long long) a->zero_chunks,
            p->dry_run ? "would store" : "stored",
            (unsigned long long) a->stored_chunks,
            (unsigned long long) a->stored_bytes,
            a->incremental ? "incremental" : "full read: ", "");
    /* The reason may quote a layer path from the base's record. */
    if (!a->incremental)
      cli_fputs_escaped (a->reason, stdout);
    putchar ('\n');
    printf ("    layers (oldest first):");
    for (j = 0; j < a->ident.n; j++) {
      putchar (' ');
      cli_fputs_escaped (a->ident.layer[j].path, stdout);
    }
    printf ("\n");
  }
}
