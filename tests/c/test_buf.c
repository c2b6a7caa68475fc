/* test_buf.c -- lb_buf, lb_alloc fault injection, lb_err. */
#include <string.h>

#include "lb_alloc.h"
#include "lb_buf.h"
#include "lb_err.h"
#include "lb_test.h"

static void test_append(void) {
    lb_buf b = {0};
    size_t n = 0;
    char *s;
    int i, ok = 1;
    CHECK(lb_buf_puts(&b, "abc") == LB_OK);
    CHECK(lb_buf_putc(&b, '-') == LB_OK);
    CHECK(lb_buf_printf(&b, "%d/%s", 42, "x") == LB_OK);
    CHECK_STR("abc-42/x", b.data);
    CHECK(b.len == 8);
    for (i = 0; i < 1000; i++) ok &= lb_buf_append(&b, "0123456789", 10) == LB_OK;
    CHECK(ok);
    CHECK(b.len == 10008);
    CHECK(b.data[b.len] == '\0');
    lb_buf_reset(&b);
    CHECK(b.len == 0 && b.data[0] == '\0');
    CHECK(lb_buf_append(&b, "a\0b", 3) == LB_OK);
    s = lb_buf_detach(&b, &n);
    CHECK(n == 3 && memcmp(s, "a\0b", 3) == 0);
    CHECK(b.data == NULL && b.len == 0);
    lb_free(s);
    lb_buf_free(&b);
}

/* Every allocation failure leaves the buffer as it was. */
static void test_alloc_failure(void) {
    lb_buf b = {0};
    long live = lb_alloc_live();
    CHECK(lb_buf_puts(&b, "keep") == LB_OK);
    lb_alloc_fail_after(0);
    CHECK(lb_buf_reserve(&b, 1 << 20) == LB_ENOMEM);
    CHECK_STR("keep", b.data);
    CHECK(b.len == 4);
    lb_alloc_fail_after(0);
    CHECK(lb_strdup("x") == NULL);
    lb_alloc_fail_after(1);            /* the first succeeds, the second fails */
    {
        char *a = lb_strdup("a"), *c = lb_strdup("c");
        CHECK(a != NULL && c == NULL);
        lb_free(a);
    }
    lb_buf_free(&b);
    lb_free(NULL);
    CHECK(lb_alloc_live() == live);
}

static void test_err(void) {
    char err[LB_ERR_LEN];
    CHECK(lb_err_set(err, LB_EINVAL, "bad %s", "thing") == LB_EINVAL);
    CHECK_STR("bad thing", err);
    CHECK(lb_err_set(NULL, LB_EIO, "ignored") == LB_EIO);
    CHECK_STR("ETIMEDOUT", lb_err_name(LB_ETIMEDOUT));
    CHECK_STR("EUNKNOWN", lb_err_name(999));
    CHECK_STR("EUNKNOWN", lb_err_name(-1));
}

int main(void) {
    test_append();
    test_alloc_failure();
    test_err();
    return lb_test_report("buf");
}
