/* lb_err.h -- error codes shared by the C core.
 *
 * Every core function that can fail returns one of these (LB_OK is 0) and,
 * where it takes a `char *err` of LB_ERR_LEN bytes, fills it with a message
 * naming the operation and its target (never a secret).  The Lua bindings
 * turn (code, err) into `nil, err, lb_err_name(code)`. */
#ifndef LB_ERR_H
#define LB_ERR_H

#define LB_ERR_LEN 256

enum {
    LB_OK = 0,
    LB_ENOMEM,      /* allocation failed */
    LB_EINVAL,      /* bad argument or malformed input */
    LB_EIO,         /* local file or stream error (errno in the message) */
    LB_ETIMEDOUT,   /* connect/read/overall timeout */
    LB_ECANCELED,   /* interrupted (SIGINT) or cancelled by a callback */
    LB_ECONNECT,    /* could not connect / resolve / connection reset */
    LB_ETLS,        /* TLS handshake or verification failure */
    LB_EHTTP,       /* other transport failure reported by libcurl */
    LB_EPARSE,      /* YAML/XML/JSON syntax error */
    LB_ECALLBACK,   /* a user callback failed (binding keeps its message) */
    LB_EINTEGRITY,  /* data failed its checksum/length check (never kept) */
    LB_ESERVICE,    /* the service answered with an error status; its own
                       code ("NoSuchKey", "HTTP_503") travels alongside */
    LB_ECOUNT_      /* number of codes; not an error */
};

/* Stable short name of a code ("ENOMEM", "ETIMEDOUT", ...), never NULL. */
const char *lb_err_name(int code);

/* printf into err (which may be NULL) and return code; for one-line returns:
 *     return lb_err_set(err, LB_EINVAL, "bad header name '%s'", name); */
int lb_err_set(char *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
