/* params.c -- API parameters as proxmox-schema / proxmox-rest-server
 * handle them: form or JSON input, unknown keys rejected, integers as
 * numbers in JSON, ranges and formats, and the ParameterError text
 * (proxmox-schema src/schema.rs, Display for ParameterError: one error
 * "parameter verification failed - 'x': ...", several
 * "parameter verification failed:\n- 'x': ...\n- 'y': ..."). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    /* percent-encoding and form_urlencoded keep a '%' that is not
     * followed by two hex digits as it is. */
    if (c == '%' && i + 2 < len && hexval (s[i + 1]) >= 0
        && hexval (s[i + 2]) >= 0) {
      c = hexval (s[i + 1]) * 16 + hexval (s[i + 2]);
      i += 2;
    }
    else if (form && c == '+')
      c = ' ';
    if (c == 0) {
      /* Rust strings may hold NUL, ours can not. */
      free (out);
      return NULL;
    }
    out[o++] = (char) c;
  }
  out[o] = 0;
  return out;
}

char *
srv_normalize_path (const char *s, size_t len)
{
  char *out = malloc (len + 2);
  size_t i = 0, o = 0;

  if (out == NULL)
    return NULL;
  while (i < len) {
    size_t j = i;
    while (j < len && s[j] != '/')
      j++;
    if (j > i) {
      if (s[i] == '.') {
        free (out);
        return NULL;
      }
      out[o++] = '/';
      memcpy (out + o, s + i, j - i);
      o += j - i;
    }
    i = j + 1;
  }
  out[o] = 0;
  return out;
}

/* Check S[0..LEN) as Rust's str::from_utf8 does.  True if valid; else
 * *VALID_UP_TO and *ERROR_LEN (0: incomplete sequence at the end) as in
 * core::str::Utf8Error. */
bool
srv_utf8_check (const uint8_t *s, size_t len, size_t *valid_up_to,
                size_t *error_len)
{
  size_t i = 0;

  while (i < len) {
    uint8_t c = s[i], lo = 0x80, hi = 0xbf;
    size_t w, j;

    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf)
      w = 2;
    else if (c >= 0xe0 && c <= 0xef)
      w = 3;
    else if (c >= 0xf0 && c <= 0xf4)
      w = 4;
    else {
      *valid_up_to = i;
      *error_len = 1;
      return false;
    }
    /* Only the second byte has a narrower range. */
    if (c == 0xe0)
      lo = 0xa0;
    else if (c == 0xed)
      hi = 0x9f;
    else if (c == 0xf0)
      lo = 0x90;
    else if (c == 0xf4)
      hi = 0x8f;
    for (j = 1; j < w; j++) {
      if (i + j >= len) {
        *valid_up_to = i;
        *error_len = 0;
        return false;
      }
      if (s[i + j] < (j == 1 ? lo : 0x80) || s[i + j] > (j == 1 ? hi : 0xbf)) {
        *valid_up_to = i;
        *error_len = j;
        return false;
      }
    }
    i += w;
  }
  return true;
}

/* String::from_utf8_lossy: each invalid part becomes U+FFFD.  S is
 * freed; the result is malloc'd (NULL on ENOMEM). */
static char *
utf8_lossy (char *s)
{
  size_t len = strlen (s), vu, el, o = 0, i = 0;
  char *out;

  if (srv_utf8_check ((const uint8_t *) s, len, &vu, &el))
    return s;
  out = malloc (len * 3 + 1);
  if (out == NULL) {
    free (s);
    return NULL;
  }
  while (i < len) {
    if (srv_utf8_check ((const uint8_t *) s + i, len - i, &vu, &el)) {
      memcpy (out + o, s + i, len - i);
      o += len - i;
      break;
    }
    memcpy (out + o, s + i, vu);
    o += vu;
    memcpy (out + o, "\xef\xbf\xbd", 3);
    o += 3;
    i += vu + (el ? el : len - i - vu);
  }
  out[o] = 0;
  free (s);
  return out;
}

/* One ParameterError entry: [NAME, MESSAGE].  A null NAME marks a plain
 * error that is not a ParameterError (e.g. "Expected object - got
 * array."), reported alone and without the prefix. */
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
  json_array_append_new (errs, json_pack ("[os]", name ? json_string (name)
                                                       : json_null (),
                                          msg));
}

static const struct srv_param *
lookup (const struct srv_param *schema, const char *name)
{
  for (; schema->name; schema++)
    if (strcmp (schema->name, name) == 0)
      return schema;
  return NULL;
}

/* The schema entry after PREV in name order (the order of proxmox-schema's
 * sorted property lists), or NULL. */
static const struct srv_param *
next_sorted (const struct srv_param *schema, const struct srv_param *prev)
{
  const struct srv_param *best = NULL;

  for (; schema->name; schema++)
    if ((prev == NULL || strcmp (schema->name, prev->name) > 0)
        && (best == NULL || strcmp (schema->name, best->name) < 0))
      best = schema;
  return best;
}

/* StringSchema::check_constraints: length in characters, then format. */
static bool
check_string_value (const struct srv_param *p, const char *s,
                    const char *name, json_t *errs)
{
  size_t l = 0, i;

  /* value.chars().count(): continuation bytes do not count */
  for (i = 0; s[i]; i++)
    if (((unsigned char) s[i] & 0xc0) != 0x80)
      l++;
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
  else
    return true;
  return false;
}

/* IntegerSchema::check_constraints */
static bool
check_int_value (const struct srv_param *p, int64_t n, const char *name,
                 json_t *errs)
{
  if (n < p->min)
    add_error (errs, name, "value must have a minimum value of %" PRId64
               " (got %" PRId64 ")", p->min, n);
  else if (n > p->max)
    add_error (errs, name, "value must have a maximum value of %" PRId64
               " (got %" PRId64 ")", p->max, n);
  else
    return true;
  return false;
}

/* str::parse::<i64>, with Rust's ParseIntError texts. */
static const char *
parse_i64 (const char *v, int64_t *out)
{
  const char *d = v;
  bool neg = false;
  uint64_t n = 0, limit;

  if (*v == 0)
    return "cannot parse integer from empty string";
  if (*d == '+' || *d == '-') {
    neg = *d == '-';
    d++;
  }
  if (*d == 0)
    return "invalid digit found in string";
  limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
  for (; *d; d++) {
    if (*d < '0' || *d > '9')
      return "invalid digit found in string";
    if (n > (limit - (uint64_t) (*d - '0')) / 10)
      /* Rust reports the overflow at once, before later bad digits. */
      return neg ? "number too small to fit in target type"
                 : "number too large to fit in target type";
    n = n * 10 + (uint64_t) (*d - '0');
  }
  *out = neg ? (int64_t) (0 - n) : (int64_t) n;
  return NULL;
}

/* Schema::parse_simple_value of one form value against the type of P
 * (the item type for lists), constraints included. */
static json_t *
parse_simple (const struct srv_param *p, const char *v, const char *name,
              json_t *errs)
{
  const char *e;
  int64_t n;

  switch (p->type) {
  case SRV_P_INT:
  case SRV_P_INT_LIST:
    e = parse_i64 (v, &n);
    if (e) {
      add_error (errs, name, "%s", e);
      return NULL;
    }
    return check_int_value (p, n, name, errs) ? json_integer (n) : NULL;
  case SRV_P_BOOL:
    if (!strcasecmp (v, "1") || !strcasecmp (v, "true")
        || !strcasecmp (v, "yes") || !strcasecmp (v, "on"))
      return json_true ();
    if (!strcasecmp (v, "0") || !strcasecmp (v, "false")
        || !strcasecmp (v, "no") || !strcasecmp (v, "off"))
      return json_false ();
    add_error (errs, name, "Unable to parse boolean option.");
    return NULL;
  case SRV_P_DIGEST_LIST: {
    struct srv_param ip = *p;
    ip.min = ip.max = 0; /* the limits belong to the list */
    return check_string_value (&ip, v, name, errs) ? json_string (v) : NULL;
  }
  default:
    return check_string_value (p, v, name, errs) ? json_string (v) : NULL;
  }
}

/* One key=value of do_parse_parameter_strings (proxmox-schema schema.rs):
 * errors are kept in the order of the input. */
static void
add_form_param (const char *k, const char *v, const struct srv_param *schema,
                json_t *obj, json_t *errs)
{
  const struct srv_param *p = lookup (schema, k);

  if (p == NULL) {
    add_error (errs, k, "schema does not allow additional properties.");
    return;
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
  else {
    json_t *val = parse_simple (p, v, k, errs);
    if (val == NULL)
      return;
    if (json_object_get (obj, k)) {
      add_error (errs, k, "duplicate parameter.");
      json_decref (val);
    }
    else
      json_object_set_new (obj, k, val);
  }
}

static void
form_to_json (const char *form, size_t len, const struct srv_param *schema,
              json_t *obj, json_t *errs, bool is_query)
{
  size_t i = 0;

  if (form == NULL)
    return;
  while (i < len) {
    size_t j = i, eq;
    char *k, *v;

    while (j < len && form[j] != '&')
      j++;
    if (j == i) {
      i = j + 1;
      continue;
    }
    for (eq = i; eq < j && form[eq] != '='; eq++)
      ;
    k = srv_percent_decode (form + i, eq - i, true);
    v = eq < j ? srv_percent_decode (form + eq + 1, j - eq - 1, true)
               : strdup ("");
    /* form_urlencoded decodes lossily (U+FFFD for invalid UTF-8). */
    if (k)
      k = utf8_lossy (k);
    if (v)
      v = utf8_lossy (v);
    if (k == NULL || v == NULL)
      add_error (errs, k ? k : "?", "NUL byte in a parameter");
    /* extjs's cache buster, skipped in the query (not in a body) by
     * parse_query_parameters. */
    else if (!is_query || strcmp (k, "_dc") != 0)
      add_form_param (k, v, schema, obj, errs);
    free (k);
    free (v);
    i = j + 1;
  }
}

void
srv_form_to_json (const char *form, size_t len,
                  const struct srv_param *schema, json_t *obj, json_t *errs)
{
  form_to_json (form, len, schema, obj, errs, true);
}

/* Schema::verify_json of one property value. */
static void
verify_value (const struct srv_param *p, json_t *v, const char *name,
              json_t *errs)
{
  size_t i;
  json_t *item;
  struct srv_param ip = *p;

  switch (p->type) {
  case SRV_P_STRING:
    if (!json_is_string (v))
      add_error (errs, name, "Expected string value.");
    else
      check_string_value (p, json_string_value (v), name, errs);
    break;
  case SRV_P_INT:
    if (!json_is_integer (v))
      add_error (errs, name, "Expected integer value.");
    else
      check_int_value (p, (int64_t) json_integer_value (v), name, errs);
    break;
  case SRV_P_BOOL:
    if (!json_is_boolean (v))
      add_error (errs, name, "Expected boolean value.");
    break;
  case SRV_P_DIGEST_LIST:
  case SRV_P_INT_LIST:
    if (json_is_object (v)) {
      add_error (errs, name, "Expected array - got object.");
      break;
    }
    if (!json_is_array (v)) {
      add_error (errs, name, "Expected array - got scalar value.");
      break;
    }
    /* ArraySchema::verify_json stops at the first bad item and names it
     * "[i]", which ObjectSchema prefixes with the key: "key/[i]". */
    json_array_foreach (v, i, item) {
      char iname[160];
      json_t *one = json_array ();
      snprintf (iname, sizeof iname, "%s/[%zu]", name, i);
      if (p->type == SRV_P_INT_LIST) {
        if (!json_is_integer (item))
          add_error (one, iname, "Expected integer value.");
        else
          check_int_value (&ip, (int64_t) json_integer_value (item), iname,
                           one);
      }
      else {
        ip.min = ip.max = 0;
        if (!json_is_string (item))
          add_error (one, iname, "Expected string value.");
        else
          check_string_value (&ip, json_string_value (item), iname, one);
      }
      if (json_array_size (one) > 0) {
        json_array_extend (errs, one);
        json_decref (one);
        break;
      }
      json_decref (one);
    }
    break;
  }
}

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

void
srv_verify_params (json_t *obj, const struct srv_param *schema, json_t *errs)
{
  const char *k, **keys;
  json_t *v;
  const struct srv_param *p;
  size_t n = 0, i;

  /* ObjectSchemaType::verify_json: a plain error, not a ParameterError */
  if (json_is_array (obj)) {
    add_error (errs, NULL, "Expected object - got array.");
    return;
  }
  if (!json_is_object (obj)) {
    add_error (errs, NULL, "Expected object - got scalar value.");
    return;
  }
  /* serde_json's map (no preserve_order) iterates in key order. */
  keys = calloc (json_object_size (obj) + 1, sizeof *keys);
  if (keys == NULL) {
    add_error (errs, NULL, "out of memory");
    return;
  }
  json_object_foreach (obj, k, v)
    keys[n++] = k;
  qsort (keys, n, sizeof *keys, cmp_str);
  for (i = 0; i < n; i++) {
    v = json_object_get (obj, keys[i]);
    p = lookup (schema, keys[i]);
    if (p == NULL)
      add_error (errs, keys[i], "schema does not allow additional properties");
    else
      verify_value (p, v, keys[i], errs);
  }
  free (keys);
  /* A null value counts as missing (data[name] == Value::Null). */
  for (p = next_sorted (schema, NULL); p; p = next_sorted (schema, p)) {
    v = json_object_get (obj, p->name);
    if (!p->optional && (v == NULL || json_is_null (v)))
      add_error (errs, p->name, "property is missing and it is not optional");
  }
}

/* The form path's required check (test_required), only when the
 * conversion found no error. */
static void
check_required (json_t *obj, const struct srv_param *schema, json_t *errs)
{
  const struct srv_param *p;

  if (json_array_size (errs) > 0)
    return;
  for (p = next_sorted (schema, NULL); p; p = next_sorted (schema, p))
    if (!p->optional && json_object_get (obj, p->name) == NULL)
      add_error (errs, p->name,
                 "parameter is missing and it is not optional.");
}

char *
srv_param_errors_text (json_t *errs)
{
  size_t i, cap = 64, len;
  json_t *e;
  char *out;

  if (json_array_size (errs) == 0)
    return NULL;
  e = json_array_get (errs, 0);
  if (json_is_null (json_array_get (e, 0)))
    return strdup (json_string_value (json_array_get (e, 1)));
  json_array_foreach (errs, i, e)
    cap += strlen (json_string_value (json_array_get (e, 0)))
           + strlen (json_string_value (json_array_get (e, 1))) + 16;
  out = malloc (cap);
  if (out == NULL)
    return NULL;
  if (json_array_size (errs) == 1) {
    snprintf (out, cap, "parameter verification failed - '%s': %s",
              json_string_value (json_array_get (e, 0)),
              json_string_value (json_array_get (e, 1)));
    return out;
  }
  len = (size_t) snprintf (out, cap, "parameter verification failed:");
  json_array_foreach (errs, i, e)
    len += (size_t) snprintf (out + len, cap - len, "\n- '%s': %s",
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
  return srv_sync_params_uri ("application/x-www-form-urlencoded", NULL, 0,
                              query, NULL, schema, errtext);
}

json_t *
srv_sync_params (const char *content_type, const uint8_t *body, size_t len,
                 const char *query, const struct srv_param *schema,
                 char **errtext)
{
  return srv_sync_params_uri (content_type, body, len, query, NULL, schema,
                              errtext);
}

json_t *
srv_sync_params_uri (const char *content_type, const uint8_t *body,
                     size_t len, const char *query,
                     const char *const *uri_params,
                     const struct srv_param *schema, char **errtext)
{
  bool is_json = false;
  json_t *obj, *errs;
  size_t vu, el;

  /* get_request_parameters (proxmox-rest-server src/rest.rs) */
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
      /* The header value printed with Rust's {:?} of to_str(). */
      snprintf (buf, sizeof buf, "unsupported content type Ok(\"%s\")",
                content_type);
      *errtext = strdup (buf);
      return NULL;
    }
  }
  if (!srv_utf8_check (body, len, &vu, &el)) {
    char buf[120];
    /* "uft8" is PBS's spelling; the rest is Rust's Utf8Error. */
    if (el)
      snprintf (buf, sizeof buf, "Request body not uft8: invalid utf-8 "
                "sequence of %zu bytes from index %zu", el, vu);
    else
      snprintf (buf, sizeof buf, "Request body not uft8: incomplete utf-8 "
                "byte sequence from index %zu", vu);
    *errtext = strdup (buf);
    return NULL;
  }
  if (is_json) {
    json_error_t jerr;
    size_t i;
    /* The query is ignored for JSON bodies; an empty body is {}; a
     * repeated key keeps its last value (serde_json). */
    obj = len == 0 ? json_object ()
                   : json_loadb ((const char *) body, len, JSON_DECODE_ANY,
                                 &jerr);
    if (obj == NULL) {
      char buf[300];
      /* XXX jansson's text, not serde_json's */
      snprintf (buf, sizeof buf, "%s at line %d column %d", jerr.text,
                jerr.line, jerr.column);
      *errtext = strdup (buf);
      return NULL;
    }
    /* URI parameters are parsed into the object first; their errors
     * are plain (parse_simple_value), not ParameterErrors. */
    for (i = 0; uri_params && uri_params[i]; i += 2) {
      const struct srv_param *p = lookup (schema, uri_params[i]);
      json_t *one = json_array (), *val;
      if (p == NULL) {
        json_decref (one);
        continue;
      }
      val = parse_simple (p, uri_params[i + 1], uri_params[i], one);
      if (val == NULL) {
        *errtext = strdup (json_string_value (
            json_array_get (json_array_get (one, 0), 1)));
        json_decref (one);
        json_decref (obj);
        return NULL;
      }
      json_decref (one);
      if (json_is_object (obj))
        json_object_set_new (obj, uri_params[i], val);
      else
        json_decref (val);
    }
    errs = json_array ();
    srv_verify_params (obj, schema, errs);
    return finish_params (obj, errs, errtext);
  }
  /* parse_query_parameters: the form body, then the query, then the URI
   * parameters, as one list. */
  obj = json_object ();
  errs = json_array ();
  form_to_json ((const char *) body, len, schema, obj, errs, false);
  if (query)
    form_to_json (query, strlen (query), schema, obj, errs, true);
  for (size_t i = 0; uri_params && uri_params[i]; i += 2)
    add_form_param (uri_params[i], uri_params[i + 1], schema, obj, errs);
  check_required (obj, schema, errs);
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

/* BACKUP_NAMESPACE_REGEX ^(?:(?:SAFE_ID/){0,7}SAFE_ID)?$: "" or up to
 * eight safe ids joined by '/' (pbs-api-types src/lib.rs BACKUP_NS_RE).
 * The length (256) is the schema's max_length; the depth limit of 7 is
 * BackupNamespace's (checked later, "namespace too deep, ..."). */
bool
srv_fmt_ns (const char *s)
{
  size_t depth = 0;
  const char *p = s;

  if (*s == 0)
    return true;
  for (;;) {
    size_t n = strcspn (p, "/");
    if (!safe_id_n (p, n) || ++depth > 8)
      return false;
    if (p[n] == 0)
      return true;
    p += n + 1;
  }
}

/* PROXMOX_USER_ID_REGEX (proxmox-auth-api src/types.rs):
 * ^[^\s:/[:cntrl:]]+@SAFE_ID$ -- the name may hold '@', the realm not. */
bool
srv_fmt_userid (const char *s)
{
  const char *at = strrchr (s, '@'), *p;

  if (at == NULL || at == s || !srv_fmt_safe_id (at + 1))
    return false;
  for (p = s; p < at; p++)
    if (isspace ((unsigned char) *p) || iscntrl ((unsigned char) *p)
        || *p == ':' || *p == '/')
      return false;
  return true;
}
