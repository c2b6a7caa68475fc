/* lb_yaml_scalar.h -- the core-schema grammar of plain YAML scalars (internal
 * to the loader).  Every function reads len bytes at s (no NUL needed). */
#ifndef LB_YAML_SCALAR_H
#define LB_YAML_SCALAR_H

#include <stddef.h>

/* Which word s is: LB_YAML_WORD_NULL (~, null, Null, NULL), _TRUE (true,
 * True, TRUE), _FALSE (false, False, FALSE), or 0. */
enum { LB_YAML_WORD_NULL = 1, LB_YAML_WORD_TRUE, LB_YAML_WORD_FALSE };
int lb_yaml_scalar_word(const char *s, size_t len);

/* Integer grammar: 1 = an int in *i, 2 = out of int64 range (the value in
 * *f), 0 = not an integer. */
int lb_yaml_parse_int(const char *s, size_t len, long long *i, double *f);

/* Float grammar (.inf/.nan words included): 1 with the value in *f, else 0. */
int lb_yaml_parse_float(const char *s, size_t len, double *f);

/* Date/timestamp grammar: 0 (no match), LB_YAML_DATE or LB_YAML_TIMESTAMP with
 * the canonical text in *iso (lb_malloc'd, NULL on ENOMEM), or -1 when the
 * shape matches but the values are impossible. */
int lb_yaml_parse_time(const char *s, size_t len, char **iso);

#endif
