/* lb_yaml_scalar.c -- the YAML 1.1 core-schema grammar of plain scalars
 * (see lb_yaml_scalar.h): null/bool words, integers, floats, dates and
 * timestamps.  Pure functions over bytes; the loader (lb_yaml.c) decides
 * which apply to a scalar from its style and tag. */
#include "lb_yaml_scalar.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb_alloc.h"
#include "lb_yaml.h"

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int eq_any(const char *s, size_t len, const char *const *words) {
    for (; *words; words++)
        if (strlen(*words) == len && memcmp(s, *words, len) == 0) return 1;
    return 0;
}

static const char *const NULLS[] = {"~", "null", "Null", "NULL", NULL};
static const char *const TRUES[] = {"true", "True", "TRUE", NULL};
static const char *const FALSES[] = {"false", "False", "FALSE", NULL};
static const char *const INFS[] = {".inf", ".Inf", ".INF", NULL};
static const char *const NANS[] = {".nan", ".NaN", ".NAN", NULL};

/* Integer grammar; 1 = int in *i, 2 = out of int64 range (value in *f),
 * 0 = not an integer. */
int lb_yaml_parse_int(const char *s, size_t len, long long *i, double *f) {
    const char *p = s, *end = s + len;
    int neg = 0, base = 10, digits = 0, over = 0;
    unsigned long long acc = 0;
    double dacc = 0;
    if (p < end && (*p == '+' || *p == '-')) neg = *p++ == '-';
    if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'o' || p[1] == 'b')) {
        base = p[1] == 'x' ? 16 : p[1] == 'o' ? 8 : 2;
        p += 2;
    } else if (p == end || !is_digit((unsigned char)*p)) {
        return 0;
    }
    for (; p < end; p++) {
        int c = (unsigned char)*p, d;
        if (c == '_') continue;
        if (is_digit(c)) d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        if (d >= base) return 0;
        digits++;
        if (acc > (ULLONG_MAX - (unsigned)d) / (unsigned)base) over = 1;
        acc = acc * (unsigned)base + (unsigned)d;
        dacc = dacc * base + d;
    }
    if (!digits) return 0;
    if (!over && acc <= (neg ? (unsigned long long)INT64_MAX + 1 : (unsigned long long)INT64_MAX)) {
        *i = neg ? (long long)(0 - acc) : (long long)acc;   /* two's complement: -2^63 fits */
        return 1;
    }
    *f = neg ? -dacc : dacc;
    return 2;
}

/* Float grammar (needs '.' or an exponent); 1 = float in *f. */
int lb_yaml_parse_float(const char *s, size_t len, double *f) {
    const char *p = s, *end = s + len;
    char buf[128], *q = buf, *stop;
    int mant = 0, dot = 0, ex = 0;
    if (len >= sizeof buf) return 0;
    if (p < end && (*p == '+' || *p == '-')) {
        if (eq_any(p + 1, len - 1, INFS)) { *f = *p == '-' ? -HUGE_VAL : HUGE_VAL; return 1; }
        *q++ = *p++;
    }
    if (eq_any(s, len, INFS)) { *f = HUGE_VAL; return 1; }
    if (eq_any(s, len, NANS)) { *f = NAN; return 1; }
    if (p < end && is_digit((unsigned char)*p)) {
        for (; p < end && (is_digit((unsigned char)*p) || *p == '_'); p++)
            if (*p != '_') { *q++ = *p; mant++; }
    }
    if (p < end && *p == '.') {
        const char *dp = localeconv()->decimal_point;
        int frac = 0;
        dot = 1;
        *q++ = dp && *dp ? *dp : '.';   /* strtod follows the process locale */
        for (p++; p < end && (is_digit((unsigned char)*p) || (mant && *p == '_')); p++)
            if (*p != '_') { *q++ = *p; frac++; }
        if (!mant && !frac) return 0;
        mant += frac;
    }
    if (!mant) return 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int ed = 0;
        ex = 1;
        *q++ = *p++;
        if (p < end && (*p == '+' || *p == '-')) *q++ = *p++;
        for (; p < end && is_digit((unsigned char)*p); p++, ed++) *q++ = *p;
        if (!ed) return 0;
    }
    if (p != end || (!dot && !ex)) return 0;
    *q = '\0';
    *f = strtod(buf, &stop);
    return *stop == '\0';
}

static int num(const char *p, int n) {
    int v = 0;
    while (n--) v = v * 10 + (*p++ - '0');
    return v;
}

/* Read 1..max digits at *p; returns the count (0 = none). */
static int digits_at(const char *p, const char *end, int max) {
    int n = 0;
    while (p + n < end && n < max && is_digit((unsigned char)p[n])) n++;
    return n;
}

/* Date/timestamp grammar.  Returns 0 (no match), LB_YAML_DATE or
 * LB_YAML_TIMESTAMP with the canonical text in iso (lb_malloc'd, NULL on
 * ENOMEM), or -1 when the shape matches but the values are impossible. */
int lb_yaml_parse_time(const char *s, size_t len, char **iso) {
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s, *end = s + len, *frac = NULL;
    int y, mo, d, h = 0, mi = 0, se = 0, n, fl = 0, tz = 0, tzh = 0, tzm = 0;
    char head[96];
    *iso = NULL;
    if (digits_at(p, end, 5) != 4 || p + 4 >= end || p[4] != '-') return 0;
    y = num(p, 4);
    p += 5;
    if (!(n = digits_at(p, end, 3)) || n > 2 || p + n >= end || p[n] != '-') return 0;
    mo = num(p, n);
    p += n + 1;
    if (!(n = digits_at(p, end, 3)) || n > 2) return 0;
    d = num(p, n);
    p += n;
    if (p == end) {
        if (len != 10) return 0;   /* a date is exactly YYYY-MM-DD */
        if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
            (mo == 2 && d == 29 && (y % 4 || (y % 100 == 0 && y % 400))))
            return -1;
        *iso = lb_strndup(s, len);
        return LB_YAML_DATE;
    }
    if (*p == 'T' || *p == 't') p++;
    else if (*p == ' ' || *p == '\t') while (p < end && (*p == ' ' || *p == '\t')) p++;
    else return 0;
    if (!(n = digits_at(p, end, 3)) || n > 2 || p + n >= end || p[n] != ':') return 0;
    h = num(p, n);
    p += n + 1;
    if (digits_at(p, end, 3) != 2 || p + 2 >= end || p[2] != ':') return 0;
    mi = num(p, 2);
    p += 3;
    if (digits_at(p, end, 3) != 2) return 0;
    se = num(p, 2);
    p += 2;
    if (p < end && *p == '.') {
        frac = ++p;
        while (p < end && is_digit((unsigned char)*p)) p++;
        fl = (int)(p - frac);
    }
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    if (p < end && *p == 'Z') {
        tz = 'Z';
        p++;
    } else if (p < end && (*p == '+' || *p == '-')) {
        tz = *p++;
        if (!(n = digits_at(p, end, 3)) || n > 2) return 0;
        tzh = num(p, n);
        p += n;
        if (p < end && *p == ':') {
            if (digits_at(p + 1, end, 3) != 2) return 0;
            tzm = num(p + 1, 2);
            p += 3;
        }
    }
    if (p != end) return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && (y % 4 || (y % 100 == 0 && y % 400))) || h > 23 || mi > 59 ||
        se > 59 || tzh > 23 || tzm > 59)
        return -1;
    snprintf(head, sizeof head, "%04d-%02d-%02dT%02d:%02d:%02d", y, mo, d, h, mi, se);
    n = (int)strlen(head);
    *iso = lb_malloc((size_t)n + 1 + (size_t)fl + 8);
    if (!*iso) return LB_YAML_TIMESTAMP;
    memcpy(*iso, head, (size_t)n);
    if (fl) { (*iso)[n++] = '.'; memcpy(*iso + n, frac, (size_t)fl); n += fl; }
    if (tz == 'Z') (*iso)[n++] = 'Z';
    else if (tz) n += snprintf(*iso + n, 8, "%c%02d:%02d", tz, tzh, tzm);
    (*iso)[n] = '\0';
    return LB_YAML_TIMESTAMP;
}

int lb_yaml_scalar_word(const char *s, size_t len) {
    if (eq_any(s, len, NULLS)) return LB_YAML_WORD_NULL;
    if (eq_any(s, len, TRUES)) return LB_YAML_WORD_TRUE;
    if (eq_any(s, len, FALSES)) return LB_YAML_WORD_FALSE;
    return 0;
}
