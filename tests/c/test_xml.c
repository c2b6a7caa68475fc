/* test_xml.c -- the XML core (libexpat), driven from C alone. */
#include <stdio.h>
#include <string.h>

#include "lb_alloc.h"
#include "lb_buf.h"
#include "lb_err.h"
#include "lb_test.h"
#include "lb_xml.h"

static char err[LB_ERR_LEN];

static const char S3_LIST[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<Name>my-bucket</Name><Prefix>logs/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>"
    "<IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
    "<Contents><Key>logs/a&amp;b.txt</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified>"
    "<ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>434234</Size>"
    "<StorageClass>STANDARD</StorageClass></Contents>"
    "<Contents><Key>logs/caf\xc3\xa9.txt</Key><Size>0</Size></Contents>"
    "</ListBucketResult>\n";

static const char S3_ERROR[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<Error>\n  <Code>NoSuchKey</Code>\n  <Message>The specified key does not exist.</Message>\n"
    "  <Key>missing.txt</Key>\n  <RequestId>4442587FB7D0A2F9</RequestId>\n</Error>\n";

static const char STS[] =
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <AssumeRoleWithWebIdentityResult>\n"
    "    <Credentials>\n"
    "      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>\n"
    "      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n"
    "      <SessionToken><![CDATA[AQoDYXdzEE0a8A<&>]]></SessionToken>\n"
    "      <Expiration>2024-01-02T04:04:05Z</Expiration>\n"
    "    </Credentials>\n"
    "  </AssumeRoleWithWebIdentityResult>\n"
    "  <ResponseMetadata><RequestId>ad4156e9</RequestId></ResponseMetadata>\n"
    "</AssumeRoleWithWebIdentityResponse>\n";

static void check_s3_list(const lb_xml_elem *r) {
    const lb_xml_elem *c;
    CHECK(r != NULL);
    if (!r) return;
    CHECK_STR("ListBucketResult", r->name);
    CHECK_STR("http://s3.amazonaws.com/doc/2006-03-01/", r->ns);
    CHECK(r->n == 8);
    CHECK_STR("my-bucket", lb_xml_child_text(r, "Name"));
    CHECK_STR("true", lb_xml_child_text(r, "IsTruncated"));
    CHECK_STR("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=", lb_xml_child_text(r, "NextContinuationToken"));
    c = lb_xml_child(r, "Contents");
    CHECK(c && c->n == 5);
    CHECK_STR("logs/a&b.txt", lb_xml_child_text(c, "Key"));
    CHECK_STR("\"9b2cf535f27731c974343645a3985328\"", lb_xml_child_text(c, "ETag"));
    CHECK_STR("http://s3.amazonaws.com/doc/2006-03-01/", c ? c->ns : NULL);
    CHECK(r->n == 8 && strcmp(r->kids[7]->name, "Contents") == 0);
    CHECK_STR("logs/caf\xc3\xa9.txt", lb_xml_child_text(r->n == 8 ? r->kids[7] : NULL, "Key"));
    CHECK(lb_xml_child(r, "Nope") == NULL && lb_xml_child_text(r, "Nope") == NULL);
    CHECK_STR("", r->text);
    CHECK(r->line == 2 && r->col == 1);
}

static void test_documents(void) {
    lb_xml_elem *r = NULL;
    const lb_xml_elem *c;
    CHECK(lb_xml_parse(S3_LIST, strlen(S3_LIST), &r, err) == LB_OK);
    check_s3_list(r);
    lb_xml_free(r);

    CHECK(lb_xml_parse(S3_ERROR, strlen(S3_ERROR), &r, err) == LB_OK);
    CHECK(r && strcmp(r->name, "Error") == 0 && r->ns == NULL && r->n == 4);
    CHECK_STR("NoSuchKey", lb_xml_child_text(r, "Code"));
    CHECK_STR("The specified key does not exist.", lb_xml_child_text(r, "Message"));
    CHECK_STR("\n  \n  \n  \n  \n", r->text);   /* raw: the whitespace between children */
    c = lb_xml_child(r, "Message");
    CHECK(c && c->line == 4 && c->col == 3);
    lb_xml_free(r);

    CHECK(lb_xml_parse(STS, strlen(STS), &r, err) == LB_OK);
    c = lb_xml_child(lb_xml_child(r, "AssumeRoleWithWebIdentityResult"), "Credentials");
    CHECK_STR("ASIAEXAMPLE", lb_xml_child_text(c, "AccessKeyId"));
    CHECK_STR("AQoDYXdzEE0a8A<&>", lb_xml_child_text(c, "SessionToken"));
    CHECK_STR("2024-01-02T04:04:05Z", lb_xml_child_text(c, "Expiration"));
    CHECK_STR("ad4156e9", lb_xml_child_text(lb_xml_child(r, "ResponseMetadata"), "RequestId"));
    lb_xml_free(r);

    {   /* attributes, prefixes, mixed text */
        static const char doc[] =
            "<p:root xmlns:p=\"urn:p\" xmlns:x=\"urn:x\" id=\"7\" x:kind=\"k\">a<b/>c&#x41;<!-- no -->d<?pi x?></p:root>";
        CHECK(lb_xml_parse(doc, strlen(doc), &r, err) == LB_OK);
        CHECK_STR("root", r->name);
        CHECK_STR("urn:p", r->ns);
        CHECK(r->nattrs == 2);
        CHECK_STR("7", lb_xml_attr_get(r, "id"));
        CHECK_STR("k", lb_xml_attr_get(r, "kind"));
        CHECK(lb_xml_attr_get(r, "nope") == NULL);
        CHECK_STR("acAd", r->text);
        CHECK(r->n == 1 && strcmp(r->kids[0]->name, "b") == 0 && r->kids[0]->ns == NULL);
        lb_xml_free(r);
    }
}

static void test_errors(void) {
    lb_xml_elem *r = (lb_xml_elem *)1;
    CHECK(lb_xml_parse("<a><b></a>", 10, &r, err) == LB_EPARSE);
    CHECK(r == NULL);
    CHECK_STR("xml: line 1 col 9: mismatched tag", err);
    CHECK(lb_xml_parse("", 0, &r, err) == LB_EPARSE);
    CHECK_STR("xml: line 1 col 1: no element found", err);
    CHECK(lb_xml_parse("<a>\n<b>", 7, &r, err) == LB_EPARSE);
    CHECK_STR("xml: line 2 col 4: no element found", err);
    CHECK(lb_xml_parse("<a>&nope;</a>", 13, &r, err) == LB_EPARSE);
    CHECK_STR("xml: line 1 col 4: undefined entity", err);
    CHECK(lb_xml_parse("<a/><b/>", 8, &r, err) == LB_EPARSE);
    CHECK_STR("xml: line 1 col 5: junk after document element", err);
    CHECK(lb_xml_parse("not xml", 7, &r, err) == LB_EPARSE);
    CHECK_STR("xml: line 1 col 1: syntax error", err);
    CHECK(lb_xml_parse("<a>\xff</a>", 8, &r, err) == LB_EPARSE);
    CHECK_STR("xml: line 1 col 4: not well-formed (invalid token)", err);
}

static void test_hostile(void) {
    static const char laughs[] =
        "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n"
        " <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n]>\n<lolz>&lol2;</lolz>\n";
    static const char external[] =
        "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x>&e;</x>";
    lb_xml_elem *r;
    lb_buf b = {0};
    int i;
    CHECK(lb_xml_parse(laughs, strlen(laughs), &r, err) == LB_EPARSE);
    CHECK_STR("xml: line 3 col 15: entity declarations are not allowed", err);
    CHECK(lb_xml_parse(external, strlen(external), &r, err) == LB_EPARSE);
    CHECK(strstr(err, "entity declarations are not allowed") != NULL);
    /* a DOCTYPE without entities is harmless */
    CHECK(lb_xml_parse("<!DOCTYPE x><x>1</x>", 20, &r, err) == LB_OK);
    CHECK_STR("1", r->text);
    lb_xml_free(r);
    /* depth cap: 256 levels pass, 257 fail */
    for (i = 0; i < LB_XML_MAX_DEPTH; i++) lb_buf_puts(&b, "<d>");
    for (i = 0; i < LB_XML_MAX_DEPTH; i++) lb_buf_puts(&b, "</d>");
    CHECK(lb_xml_parse(b.data, b.len, &r, err) == LB_OK);
    lb_xml_free(r);
    lb_buf_reset(&b);
    for (i = 0; i <= LB_XML_MAX_DEPTH; i++) lb_buf_puts(&b, "<d>");
    CHECK(lb_xml_parse(b.data, b.len, &r, err) == LB_EPARSE);
    CHECK_STR("xml: line 1 col 769: nesting deeper than 256 elements", err);
    lb_buf_free(&b);
}

/* The streaming API: feed S3_LIST in every chunk size from 1 byte up. */
static void test_streaming(void) {
    size_t chunk, len = strlen(S3_LIST);
    for (chunk = 1; chunk <= 64; chunk = chunk < 8 ? chunk + 1 : chunk * 2) {
        lb_xml_parser *p = lb_xml_parser_new();
        lb_xml_elem *r;
        size_t off;
        int rc = LB_OK;
        CHECK(p != NULL);
        for (off = 0; off < len && rc == LB_OK; off += chunk)
            rc = lb_xml_parser_feed(p, S3_LIST + off, len - off < chunk ? len - off : chunk, err);
        CHECK(rc == LB_OK);
        CHECK(lb_xml_parser_take(p) == NULL);   /* not before finish */
        CHECK(lb_xml_parser_finish(p, err) == LB_OK);
        CHECK(lb_xml_parser_finish(p, err) == LB_OK);   /* idempotent */
        CHECK(lb_xml_parser_feed(p, "x", 1, err) == LB_EINVAL);
        r = lb_xml_parser_take(p);
        check_s3_list(r);
        CHECK(lb_xml_parser_take(p) == NULL);
        lb_xml_parser_free(p);
        lb_xml_free(r);
    }
    {   /* a failure is sticky; the parser still frees cleanly */
        lb_xml_parser *p = lb_xml_parser_new();
        CHECK(lb_xml_parser_feed(p, "<a><b>", 6, err) == LB_OK);
        CHECK(lb_xml_parser_feed(p, "</c>", 4, err) == LB_EPARSE);
        CHECK_STR("xml: line 1 col 9: mismatched tag", err);
        CHECK(lb_xml_parser_feed(p, "</b></a>", 8, err) == LB_EPARSE);
        CHECK(lb_xml_parser_finish(p, err) == LB_EPARSE);
        CHECK_STR("xml: line 1 col 9: mismatched tag", err);
        CHECK(lb_xml_parser_take(p) == NULL);
        lb_xml_parser_free(p);
    }
    {   /* truncated input only fails at finish */
        lb_xml_parser *p = lb_xml_parser_new();
        CHECK(lb_xml_parser_feed(p, S3_ERROR, 40, err) == LB_OK);
        CHECK(lb_xml_parser_finish(p, err) == LB_EPARSE);
        lb_xml_parser_free(p);
    }
    lb_xml_parser_free(NULL);
    lb_xml_free(NULL);
}

static void test_alloc_failures(void) {
    const char *docs[] = {S3_LIST, STS, "<a x='1'>t<b>u</b>v</a>"};
    size_t d;
    for (d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        long base = lb_alloc_live(), k;
        int rc = LB_ENOMEM;
        lb_xml_elem *r = NULL;
        for (k = 0; k < 10000 && rc != LB_OK; k++) {
            lb_alloc_fail_after(k);
            rc = lb_xml_parse(docs[d], strlen(docs[d]), &r, err);
            lb_alloc_fail_after(-1);
            if (rc != LB_OK) {
                CHECK(rc == LB_ENOMEM);
                CHECK(r == NULL);
                CHECK_STR("xml: out of memory", err);
                CHECK(lb_alloc_live() == base);
            }
        }
        CHECK(rc == LB_OK && k > 3);
        if (d == 0) check_s3_list(r);
        lb_xml_free(r);
        CHECK(lb_alloc_live() == base);
    }
    {   /* streaming: fail inside a later chunk */
        long base = lb_alloc_live(), k;
        int rc = LB_ENOMEM;
        for (k = 0; k < 10000 && rc != LB_OK; k++) {
            lb_xml_parser *p;
            size_t off, len = strlen(S3_LIST);
            lb_alloc_fail_after(k);
            p = lb_xml_parser_new();
            rc = p ? LB_OK : LB_ENOMEM;
            for (off = 0; p && off < len && rc == LB_OK; off += 16)
                rc = lb_xml_parser_feed(p, S3_LIST + off, len - off < 16 ? len - off : 16, err);
            if (rc == LB_OK && p) rc = lb_xml_parser_finish(p, err);
            lb_alloc_fail_after(-1);
            if (rc == LB_OK) {
                lb_xml_elem *r = lb_xml_parser_take(p);
                check_s3_list(r);
                lb_xml_free(r);
            }
            lb_xml_parser_free(p);
            CHECK(rc == LB_OK || rc == LB_ENOMEM);
            CHECK(lb_alloc_live() == base);
        }
        CHECK(rc == LB_OK);
    }
}

int main(void) {
    test_documents();
    test_errors();
    test_hostile();
    test_streaming();
    test_alloc_failures();
    CHECK(lb_alloc_live() == 0);
    return lb_test_report("xml");
}
