/* params.c -- API parameters as proxmox-schema / proxmox-rest-server
 * handle them: form or JSON input, unknown keys rejected, integers as
 * numbers in JSON, ranges and formats, and the ParameterError text
 * ("parameter verification errors\n\nparameter 'x': ...\n"). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

static int
hexval (int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

char *
srv_percent_decode (const char *s, size_t len, bool form)
{
  char *out = malloc (len + 1);
  size_t i, o = 0;

  if (out == NULL)
    return NULL;
  for (i = 0; i < len; i++) {
    int c = (unsigned char) s[i];
    if (c == '%') {
      int h, l;
      if (i + 2 >= len)
        goto bad;
      h = hexval (s[i + 1]);
      l = hexval (s[i + 2]);
      if (h < 0 || l < 0)
        goto bad;
      c = h * 16 + l;
      i += 2;
    }
    else if (form && c == '+')
      c = ' ';
    if (c == 0)
      goto bad;
    out[o++] = (char) c;
  }
  out[o] = 0;
  return out;
bad:
  free (out);
  return NULL;
}

static void
add_error (json_t *errs, const char *name, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static void
add_error (json_t *errs, const char *name, const char *fmt, ...)
{
  char msg[512];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  json_array_append_new (errs, json_pack ("[ss]", name, msg));
}

static const struct srv_param *
lookup (const struct srv_param *schema, const char *name)
{
  for (; schema->name; schema++)
    if (strcmp (schema->name, name) == 0)
      return schema;
  return NULL;
}

/* Parse a form value as the schema type wants it (parse_simple_value). */
static json_t *
parse_simple (const struct srv_param *p, const char *v, const char *name,
              json_t *errs)
{
  char *end;
  long long n;

  switch (p->type) {
  case SRV_P_INT:
  case SRV_P_INT_LIST:
    errno = 0;
    n = strtoll (v, &end, 10);
    if (*v == 0 || *end != 0 || errno != 0 || isspace ((unsigned char) *v)) {
      add_error (errs, name, "invalid integer value '%s'", v);
      return NULL;
    }
    return json_integer (n);
  case SRV_P_BOOL:
    if (!strcasecmp (v, "1") || !strcasecmp (v, "true")
        || !strcasecmp (v, "yes") || !strcasecmp (v, "on"))
      return json_true ();
    if (!strcasecmp (v, "0") || !strcasecmp (v, "false")
        || !strcasecmp (v, "no") || !strcasecmp (v, "off"))
      return json_false ();
    add_error (errs, name, "Unable to parse boolean option.");
    return NULL;
  default:
    return json_string (v);
  }
}

void
srv_form_to_json (const char *form, size_t len,
                  const struct srv_param *schema, json_t *obj, json_t *errs)
{
  size_t i = 0;

  if (form == NULL)
    return;
  while (i < len) {
    size_t j = i, eq;
    char *k, *v;
    const struct srv_param *p;

    while (j < len && form[j] != '&')
      j++;
    if (j == i) {
      i = j + 1;
      continue;
    }
    for (eq = i; eq < j && form[eq] != '='; eq++)
      ;
    k = srv_percent_decode (form + i, eq - i, true);
    v = srv_percent_decode (form + eq + 1, eq < j ? j - eq - 1 : 0, true);
    if (eq == j) {
      free (v);
      v = strdup ("");
    }
    if (k == NULL || v == NULL) {
      add_error (errs, k ? k : "?", "invalid percent encoding");
      goto next;
    }
    /* extjs's cache buster, ignored by proxmox-rest-server. */
    if (strcmp (k, "_dc") == 0)
      goto next;
    p = lookup (schema, k);
    if (p == NULL) {
      add_error (errs, k, "schema does not allow additional properties.");
      goto next;
    }
    if (p->type == SRV_P_DIGEST_LIST || p->type == SRV_P_INT_LIST) {
      json_t *arr = json_object_get (obj, k), *item;
      if (arr == NULL) {
        arr = json_array ();
        json_object_set_new (obj, k, arr);
      }
      item = parse_simple (p, v, k, errs);
      if (item)
        json_array_append_new (arr, item);
    }
    else if (json_object_get (obj, k))
      add_error (errs, k, "duplicate parameter.");
    else {
      json_t *val = parse_simple (p, v, k, errs);
      if (val)
        json_object_set_new (obj, k, val);
    }
  next:
    free (k);
    free (v);
    i = j + 1;
  }
}

static void
check_string (const struct srv_param *p, json_t *v, const char *name,
              json_t *errs)
{
  const char *s;
  size_t l;

  if (!json_is_string (v)) {
    add_error (errs, name, "Expected string value.");
    return;
  }
  s = json_string_value (v);
  l = strlen (s);
  if (p->min > 0 && l < (size_t) p->min)
    add_error (errs, name, "value must be at least %" PRId64
               " characters long", p->min);
  else if (p->max > 0 && l > (size_t) p->max)
    add_error (errs, name, "value may only be %" PRId64 " characters long",
               p->max);
  else if (p->format == srv_fmt_backup_type && !p->format (s))
    add_error (errs, name, "value '%s' is not defined in the enumeration.",
               s);
  else if (p->format && !p->format (s))
    add_error (errs, name, "value does not match the regex pattern");
}

static void
check_int (const struct srv_param *p, json_t *v, const char *name,
           json_t *errs)
{
  json_int_t n;

  if (!json_is_integer (v)) {
    add_error (errs, name, "Expected integer value.");
    return;
  }
  n = json_integer_value (v);
  if (n < p->min)
    add_error (errs, name, "value must have a minimum value of %" PRId64
               " (got %" PRId64 ")", p->min, (int64_t) n);
  else if (n > p->max)
    add_error (errs, name, "value must have a maximum value of %" PRId64
               " (got %" PRId64 ")", p->max, (int64_t) n);
}

void
srv_verify_params (json_t *obj, const struct srv_param *schema, json_t *errs)
{
  const char *k;
  json_t *v;
  const struct srv_param *p;

  if (!json_is_object (obj)) {
    add_error (errs, "", "Expected object - got scalar value.");
    return;
  }
  json_object_foreach (obj, k, v) {
    p = lookup (schema, k);
    if (p == NULL) {
      add_error (errs, k, "schema does not allow additional properties.");
      continue;
    }
    switch (p->type) {
    case SRV_P_STRING:
      check_string (p, v, k, errs);
      break;
    case SRV_P_INT:
      check_int (p, v, k, errs);
      break;
    case SRV_P_BOOL:
      if (!json_is_boolean (v))
        add_error (errs, k, "Expected boolean value.");
      break;
    case SRV_P_DIGEST_LIST:
    case SRV_P_INT_LIST: {
      size_t i;
      json_t *item;
      struct srv_param ip = *p;
      if (!json_is_array (v)) {
        add_error (errs, k, "Expected array - got scalar value.");
        break;
      }
      json_array_foreach (v, i, item) {
        char name[128];
        snprintf (name, sizeof name, "%s/[%zu]", k, i);
        if (p->type == SRV_P_INT_LIST)
          check_int (&ip, item, name, errs);
        else {
          ip.min = ip.max = 0;
          check_string (&ip, item, name, errs);
        }
      }
      break;
    }
    }
  }
  for (p = schema; p->name; p++)
    if (!p->optional && json_object_get (obj, p->name) == NULL)
      add_error (errs, p->name, "parameter is missing and it is not optional.");
}

char *
srv_param_errors_text (json_t *errs)
{
  size_t i, cap = 64, len;
  json_t *e;
  char *out;

  if (json_array_size (errs) == 0)
    return NULL;
  json_array_foreach (errs, i, e)
    cap += strlen (json_string_value (json_array_get (e, 0)))
           + strlen (json_string_value (json_array_get (e, 1))) + 32;
  out = malloc (cap);
  if (out == NULL)
    return NULL;
  len = (size_t) snprintf (out, cap, "parameter verification errors\n\n");
  json_array_foreach (errs, i, e)
    len += (size_t) snprintf (out + len, cap - len, "parameter '%s': %s\n",
                              json_string_value (json_array_get (e, 0)),
                              json_string_value (json_array_get (e, 1)));
  return out;
}

static json_t *
finish_params (json_t *obj, json_t *errs, char **errtext)
{
  *errtext = srv_param_errors_text (errs);
  json_decref (errs);
  if (*errtext) {
    json_decref (obj);
    return NULL;
  }
  return obj;
}

json_t *
srv_query_params (const char *query, const struct srv_param *schema,
                  char **errtext)
{
  json_t *obj = json_object (), *errs = json_array ();

  if (query)
    srv_form_to_json (query, strlen (query), schema, obj, errs);
  /* Conversion errors are reported alone, as parse_parameter_strings
   * stops before the object check in that case. */
  if (json_array_size (errs) == 0)
    srv_verify_params (obj, schema, errs);
  return finish_params (obj, errs, errtext);
}

json_t *
srv_sync_params (const char *content_type, const uint8_t *body, size_t len,
                 const char *query, const struct srv_param *schema,
                 char **errtext)
{
  bool is_json = false;
  json_t *obj, *errs;
  size_t i;

  if (content_type) {
    size_t l = strcspn (content_type, ";");
    if (l == strlen ("application/x-www-form-urlencoded")
        && !strncmp (content_type, "application/x-www-form-urlencoded", l))
      is_json = false;
    else if (l == strlen ("application/json")
             && !strncmp (content_type, "application/json", l))
      is_json = true;
    else {
      char buf[300];
      /* proxmox-rest-server prints the header with Rust's {:?}. */
      snprintf (buf, sizeof buf, "unsupported content type Ok(\"%s\")",
                content_type);
      *errtext = strdup (buf);
      return NULL;
    }
  }
  for (i = 0; i < len; i++)
    if (body[i] == 0) {
      *errtext = strdup ("Request body not uft8: invalid utf-8 sequence");
      return NULL;
    }
  if (is_json) {
    json_error_t jerr;
    /* The query is ignored for JSON bodies (get_request_parameters). */
    obj = json_loadb ((const char *) body, len, JSON_REJECT_DUPLICATES,
                      &jerr);
    if (obj == NULL) {
      char buf[300];
      snprintf (buf, sizeof buf, "%s at line %d column %d", jerr.text,
                jerr.line, jerr.column);
      *errtext = strdup (buf);
      return NULL;
    }
    errs = json_array ();
    srv_verify_params (obj, schema, errs);
    return finish_params (obj, errs, errtext);
  }
  obj = json_object ();
  errs = json_array ();
  srv_form_to_json ((const char *) body, len, schema, obj, errs);
  if (query)
    srv_form_to_json (query, strlen (query), schema, obj, errs);
  if (json_array_size (errs) == 0)
    srv_verify_params (obj, schema, errs);
  return finish_params (obj, errs, errtext);
}

/* ---------------------------------------------------------------- formats */

/* SAFE_ID_REGEX and BACKUP_ID_REGEX of pbs-api-types are the same
 * pattern: [A-Za-z0-9_][A-Za-z0-9._-]* */
static bool
safe_id_n (const char *s, size_t n)
{
  size_t i;

  if (n == 0 || s[0] == '.' || s[0] == '-')
    return false;
  for (i = 0; i < n; i++)
    if (!isalnum ((unsigned char) s[i]) && s[i] != '_' && s[i] != '.'
        && s[i] != '-')
      return false;
  return true;
}

bool
srv_fmt_safe_id (const char *s)
{
  return safe_id_n (s, strlen (s));
}

bool
srv_fmt_digest (const char *s)
{
  size_t i;

  /* SHA256_HEX_REGEX ^[a-f0-9]{64}$: upper case is a schema error. */
  for (i = 0; s[i]; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return i == 64;
}

bool
srv_fmt_backup_type (const char *s)
{
  return !strcmp (s, "vm") || !strcmp (s, "ct") || !strcmp (s, "host");
}

bool
srv_fmt_backup_id (const char *s)
{
  return srv_fmt_safe_id (s);
}

/* BACKUP_NAMESPACE_SCHEMA: "" or up to 7 safe ids joined by '/', at most
 * 256 characters. */
bool
srv_fmt_ns (const char *s)
{
  size_t depth = 0;
  const char *p = s;

  if (*s == 0)
    return true;
  if (strlen (s) > 256)
    return false;
  for (;;) {
    size_t n = strcspn (p, "/");
    if (!safe_id_n (p, n) || ++depth > 7)
      return false;
    if (p[n] == 0)
      return true;
    p += n + 1;
  }
}
