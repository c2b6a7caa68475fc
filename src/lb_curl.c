/* lb_curl.c -- libcurl loaded with dlopen on the first HTTP client (see
 * lb_curl.h for why and how). */
#define CURL_DISABLE_TYPECHECK
#include "lb_curl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lb_err.h"

#define LIBCURL "libcurl.so.4"  /* the SONAME Debian's libcurl4 installs */

lb_curl_api lb_curl;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_rc = LB_EHTTP;
static char load_err[LB_ERR_LEN];

/* Each function pointer of lb_curl and the symbol it comes from. */
#define SYM(f) { (void **)&lb_curl.f, "curl_" #f }
static const struct { void **slot; const char *name; } SYMS[] = {
    SYM(global_init), SYM(easy_init), SYM(easy_cleanup), SYM(easy_reset), SYM(easy_setopt),
    SYM(easy_getinfo), SYM(easy_strerror), SYM(multi_init), SYM(multi_cleanup),
    SYM(multi_setopt), SYM(multi_add_handle), SYM(multi_remove_handle), SYM(multi_perform),
    SYM(multi_poll), SYM(multi_info_read), SYM(multi_strerror), SYM(slist_append),
    SYM(slist_free_all),
};

static void load(void) {
    const char *path = getenv("LUABATCH_LIBCURL");
    void *h;
    size_t i;
    if (!path || !*path) path = LIBCURL;
    h = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        lb_err_set(load_err, LB_EHTTP, "libcurl is not available (%s; install libcurl4): %s", path,
                   why ? why : "dlopen failed");
        return;
    }
    for (i = 0; i < sizeof SYMS / sizeof *SYMS; i++) {
        if (!(*SYMS[i].slot = dlsym(h, SYMS[i].name))) {
            lb_err_set(load_err, LB_EHTTP, "libcurl %s lacks %s (libcurl 7.66 or later needed)", path,
                       SYMS[i].name);
            memset(&lb_curl, 0, sizeof lb_curl);
            return;  /* h stays open: harmless, and dlclose could run its destructors mid-way */
        }
    }
    if (lb_curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        lb_err_set(load_err, LB_EHTTP, "libcurl %s: curl_global_init failed", path);
        return;
    }
    load_rc = LB_OK;
}

int lb_curl_load(char *err) {
    pthread_once(&once, load);
    if (load_rc != LB_OK && err) memcpy(err, load_err, LB_ERR_LEN);
    return load_rc;
}
