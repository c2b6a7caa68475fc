/* lb_curl.h -- libcurl, loaded on first use (dlopen), for lb_http.c only.
 *
 * The executable and luabatch.core do not link libcurl: Debian's libcurl
 * pulls in some 30 more shared libraries (GnuTLS, nghttp2, LDAP, Kerberos,
 * ...) whose relocation was most of `luabatch -e ''`'s start-up.  The first
 * HTTP client (lb_http_client_open) calls lb_curl_load, which opens
 * libcurl.so.4 (RTLD_LAZY | RTLD_LOCAL; $LUABATCH_LIBCURL names another
 * file), resolves the functions below into lb_curl and runs
 * curl_global_init, once per process (thread safe).  Include after
 * <curl/curl.h> built with CURL_DISABLE_TYPECHECK: the macros at the end
 * send the curl_* calls of the including file through the table. */
#ifndef LB_CURL_H
#define LB_CURL_H

#include <curl/curl.h>

typedef struct lb_curl_api {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    const char *(*easy_strerror)(CURLcode);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_cleanup)(CURLM *);
    CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
    CURLMcode (*multi_add_handle)(CURLM *, CURL *);
    CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
    CURLMcode (*multi_perform)(CURLM *, int *);
    CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd *, unsigned int, int, int *);
    CURLMsg *(*multi_info_read)(CURLM *, int *);
    const char *(*multi_strerror)(CURLMcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} lb_curl_api;

extern lb_curl_api lb_curl;

/* Load libcurl and run curl_global_init, the first time; later calls
 * return the first outcome.  Returns LB_OK, or LB_EHTTP with err (LB_ERR_LEN
 * bytes, may be NULL) naming the library and the loader's reason. */
int lb_curl_load(char *err);

#undef curl_easy_setopt  /* curl.h's own (call-through) macros */
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_easy_init (*lb_curl.easy_init)
#define curl_easy_cleanup (*lb_curl.easy_cleanup)
#define curl_easy_reset (*lb_curl.easy_reset)
#define curl_easy_setopt (*lb_curl.easy_setopt)
#define curl_easy_getinfo (*lb_curl.easy_getinfo)
#define curl_easy_strerror (*lb_curl.easy_strerror)
#define curl_multi_init (*lb_curl.multi_init)
#define curl_multi_cleanup (*lb_curl.multi_cleanup)
#define curl_multi_setopt (*lb_curl.multi_setopt)
#define curl_multi_add_handle (*lb_curl.multi_add_handle)
#define curl_multi_remove_handle (*lb_curl.multi_remove_handle)
#define curl_multi_perform (*lb_curl.multi_perform)
#define curl_multi_poll (*lb_curl.multi_poll)
#define curl_multi_info_read (*lb_curl.multi_info_read)
#define curl_multi_strerror (*lb_curl.multi_strerror)
#define curl_slist_append (*lb_curl.slist_append)
#define curl_slist_free_all (*lb_curl.slist_free_all)

#endif
