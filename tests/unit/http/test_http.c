/*
 * test_http.c - the HTTP/1.1 request parser and its helpers (tlsloop/http.h): complete and
 * partial heads, every proper prefix incomplete, the strict refusals (smuggling, folding, bare CR,
 * NUL, bad names), the framing checks, chunked bodies split anywhere, target normalisation,
 * dates, ranges, entity tags, media types.
 */
#include <string.h>

#include <tlsloop/http.h>

#include "test.h"

#define MAXH 32

typedef struct parsed {
    tl_http_header h[MAXH];
    tl_http_request req;
    int rc;
} parsed;

static void parse(parsed *p, const char *s)
{
    memset(p, 0, sizeof *p);
    p->req.headers = p->h;
    p->req.max_headers = MAXH;
    p->rc = tl_http_parse_request(s, strlen(s), &p->req);
}

/* The status a whole request gets: its parse error, or its framing error, or 0. */
static int status_of(const char *s)
{
    parsed p;
    parse(&p, s);
    if (p.rc == TL_HTTP_ERROR)
        return p.req.error_status;
    if (p.rc == TL_HTTP_INCOMPLETE)
        return -2;
    tl_http_message m;
    return tl_http_check_request(&p.req, &m);
}

/* The parser's own answer: its error status, or 0 when it parsed the head (framing not checked). */
static int parse_status(const char *s)
{
    parsed p;
    parse(&p, s);
    return p.rc == TL_HTTP_ERROR ? p.req.error_status : p.rc == TL_HTTP_INCOMPLETE ? -2 : 0;
}

static bool span_is(const char *p, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

TEST(simple_request)
{
    const char *s = "GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\n"
                    "User-Agent:  curl/8 \t\r\nAccept: */*\r\n\r\nBODY";
    parsed p;
    parse(&p, s);
    CHECK_EQ_INT(p.rc, strstr(s, "BODY") - s);
    CHECK(span_is(p.req.method, p.req.method_len, "GET"));
    CHECK(span_is(p.req.target, p.req.target_len, "/index.html?x=1"));
    CHECK_EQ_INT(p.req.minor_version, 1);
    CHECK_EQ_INT(p.req.num_headers, 3);
    CHECK(span_is(p.h[0].name, p.h[0].name_len, "Host"));
    CHECK(span_is(p.h[0].value, p.h[0].value_len, "example.com"));
    CHECK(span_is(p.h[1].value, p.h[1].value_len, "curl/8"));   /* spaces and tabs trimmed */
    const tl_http_header *ua = tl_http_find_header(&p.req, "user-agent");
    CHECK(ua == &p.h[1]);
    CHECK(tl_http_find_header(&p.req, "cookie") == NULL);
    tl_http_message m;
    CHECK_EQ_INT(tl_http_check_request(&p.req, &m), 0);
    CHECK(m.keep_alive);
    CHECK_EQ_INT(m.content_length, -1);
    CHECK(!m.chunked);
    CHECK(span_is(m.host, m.host_len, "example.com"));
}

TEST(lf_only_empty_lines_and_empty_value)
{
    /* A lone LF ends lines only with TL_HTTP_LONE_LF; by default it is a 400. */
    const char *s = "\r\n\nHEAD / HTTP/1.0\nX-Empty:\nX-Sp:   \n\n";
    parsed p;
    parse(&p, s);
    CHECK_EQ_INT(p.rc, TL_HTTP_ERROR);
    CHECK_EQ_INT(p.req.error_status, 400);
    CHECK(p.req.error && strstr(p.req.error, "lone LF"));
    memset(&p, 0, sizeof p);
    p.req.headers = p.h;
    p.req.max_headers = MAXH;
    p.rc = tl_http_parse_request_ex(s, strlen(s), &p.req, TL_HTTP_LONE_LF);
    CHECK_EQ_INT(p.rc, strlen(s));
    CHECK(span_is(p.req.method, p.req.method_len, "HEAD"));
    CHECK_EQ_INT(p.req.minor_version, 0);
    CHECK_EQ_INT(p.req.num_headers, 2);
    CHECK_EQ_INT(p.h[0].value_len, 0);
    CHECK_EQ_INT(p.h[1].value_len, 0);
    tl_http_message m;
    CHECK_EQ_INT(tl_http_check_request(&p.req, &m), 0);   /* 1.0 needs no Host */
    CHECK(!m.keep_alive);                                 /* 1.0 without keep-alive */
}

TEST(every_prefix_is_incomplete)
{
    const char *s = "POST /a/b HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 5\r\n"
                    "Connection: keep-alive, Upgrade\r\n\r\n";
    size_t n = strlen(s);
    parsed p;
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        memcpy(buf, s, i);
        buf[i] = 0;
        memset(&p, 0, sizeof p);
        p.req.headers = p.h;
        p.req.max_headers = MAXH;
        int rc = tl_http_parse_request(buf, i, &p.req);
        if (rc != TL_HTTP_INCOMPLETE) {
            fprintf(stderr, "  prefix %zu: %d (%s)\n", i, rc, p.req.error ? p.req.error : "");
            test_failures_++;
            break;
        }
    }
    parse(&p, s);
    CHECK_EQ_INT(p.rc, n);
}

TEST(versions)
{
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.0\r\n\r\n"), 0);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 0);   /* read as 1.1 */
    CHECK_EQ_INT(parse_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    CHECK_EQ_INT(parse_status("GET / HTTP/0.9\r\n\r\n"), 505);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.10\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET / http/1.1\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET /\r\n\r\n"), 400);                     /* HTTP/0.9 form */
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1 \r\n\r\n"), 400);
    /* Garbage is refused as soon as it shows, not when the buffer fills. */
    CHECK_EQ_INT(parse_status("GET / XTTP"), 400);
    CHECK_EQ_INT(parse_status("\x16\x03\x01\x02\x00"), 400);              /* a TLS ClientHello */
}

TEST(request_line_strictness)
{
    CHECK_EQ_INT(parse_status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);   /* bare CR */
    parsed p;
    parse(&p, "GET / HTTP/1.1\r\r\n");
    CHECK_EQ_INT(p.rc, TL_HTTP_ERROR);
    CHECK_STR(p.req.error, "malformed request line");
}

TEST(field_strictness)
{
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);     /* space before colon */
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), 400);   /* bare CR in a value */
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost: a\r\r\n"), 400);
    /* A NUL in a value (strlen would stop at it: build the bytes by hand). */
    const char nul[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    parsed p;
    memset(&p, 0, sizeof p);
    p.req.headers = p.h;
    p.req.max_headers = MAXH;
    CHECK_EQ_INT(tl_http_parse_request(nul, sizeof nul - 1, &p.req), TL_HTTP_ERROR);
    CHECK_EQ_INT(p.req.error_status, 400);
    /* obs-text and tabs inside a value are allowed. */
    CHECK_EQ_INT(parse_status("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\tb\r\n\r\n"), 0);
}

TEST(too_many_fields_is_431)
{
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < MAXH; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X-%d: v\r\n", i);
    snprintf(buf + n, sizeof buf - n, "\r\n");
    CHECK_EQ_INT(parse_status(buf), 431);
}

TEST(incomplete_status_and_head_end)
{
    CHECK_EQ_INT(tl_http_incomplete_status("GET /aaaaaaaa", 13), 414);
    CHECK_EQ_INT(tl_http_incomplete_status("\r\nGET /aaaa", 11), 414);
    CHECK_EQ_INT(tl_http_incomplete_status("GET / HTTP/1.1\r\nX: aaaa", 23), 431);
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        CHECK(!tl_http_head_ended(s, i, 0));
    CHECK(tl_http_head_ended(s, n, 0));
    /* Fed a byte at a time, each call looking only at the new byte and the three before it. */
    size_t first = 0;
    for (size_t i = 1; i <= n && !first; i++)
        if (tl_http_head_ended(s, i, i - 1))
            first = i;
    CHECK_EQ_INT(first, n);
    CHECK(tl_http_head_ended("GET / HTTP/1.0\n\n", 16, 15));
}

TEST(content_length_rules)
{
    parsed p;
    tl_http_message m;
    parse(&p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n");
    CHECK_EQ_INT(tl_http_check_request(&p.req, &m), 0);
    CHECK_EQ_INT(m.content_length, 42);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                           "Content-Length: 4\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\n"
                           "Content-Length: 99999999999999999999\r\n\r\n"), 400);
}

TEST(transfer_encoding_rules)
{
    parsed p;
    tl_http_message m;
    parse(&p, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
    CHECK_EQ_INT(tl_http_check_request(&p.req, &m), 0);
    CHECK(m.chunked);
    /* The classic smuggling pair: both framings at once. */
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           "Content-Length: 4\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
                 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
                 501);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

TEST(host_connection_expect)
{
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"), 0);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 0);   /* empty is allowed */
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"), 0);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n"), 417);
    CHECK_EQ_INT(status_of("GET / HTTP/1.0\r\nExpect: teapot\r\n\r\n"), 0);   /* 1.0: ignored */
    parsed p;
    tl_http_message m;
    parse(&p, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n");
    CHECK_EQ_INT(tl_http_check_request(&p.req, &m), 0);
    CHECK(!m.keep_alive);
    parse(&p, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    CHECK_EQ_INT(tl_http_check_request(&p.req, &m), 0);
    CHECK(m.keep_alive);
    parse(&p, "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
    CHECK_EQ_INT(tl_http_check_request(&p.req, &m), 0);
    CHECK(!m.keep_alive);
    CHECK(tl_http_list_has(" a , ,b,  c ", 12, "B"));
    CHECK(!tl_http_list_has("closed", 6, "close"));
}

/* Read a chunked body in pieces of `step` bytes; returns consumed in total, or -1. */
static ssize_t read_chunked(const char *s, size_t n, size_t step, tl_http_chunked *d)
{
    memset(d, 0, sizeof *d);
    size_t at = 0;
    while (at < n && !d->done) {
        size_t piece = n - at < step ? n - at : step;
        ssize_t r = tl_http_chunked_read(d, (const uint8_t *)s + at, piece);
        if (r < 0)
            return -1;
        at += (size_t)r;
        if ((size_t)r < piece && !d->done)
            return -1;   /* must consume all while the body goes on */
    }
    return (ssize_t)at;
}

TEST(chunked_bodies_split_anywhere)
{
    const char *s = "5\r\nhello\r\n1A;name=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                    "0 ;last\r\nTrailer: x\r\n\r\nGET /next";
    size_t n = strlen(s), body = strstr(s, "GET") - s;
    for (size_t step = 1; step <= n; step++) {
        tl_http_chunked d;
        ssize_t got = read_chunked(s, n, step, &d);
        if (got != (ssize_t)body || !d.done || d.total != 31) {
            fprintf(stderr, "  step %zu: consumed %zd, done %d, total %llu\n", step, got, d.done,
                    (unsigned long long)d.total);
            test_failures_++;
            break;
        }
    }
    tl_http_chunked d;
    CHECK_EQ_INT(read_chunked("0\n\n", 3, 3, &d), -1);   /* LF-only lines: refused by default */
    tl_http_chunked_init(&d, TL_HTTP_LONE_LF);             /* and read with the flag */
    CHECK_EQ_INT(tl_http_chunked_read(&d, (const uint8_t *)"1\nx\n0\nT: v\n\n", 12), 12);
    CHECK(d.done && d.total == 1);
    tl_http_chunked_init(&d, TL_HTTP_LONE_LF);             /* a lone LF after an extension */
    CHECK_EQ_INT(tl_http_chunked_read(&d, (const uint8_t *)"2;a\nhi\n0;b=c\n\nX", 15), 14);
    CHECK(d.done && d.total == 2);
}

TEST(chunked_refusals)
{
    static const char *const bad[] = {
        "x\r\n", "\r\n", "5\r\nhelloX\r\n", "5\rX", "5 \r\nhello\r\n", "-5\r\n",
        "1000000000000000\r\n", "0\r\nBad\x01\r\n\r\n", "0\r\n folded\r\n\r\n", "5\r\nhello\r\r",
        "5;\x01\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tl_http_chunked d;
        if (read_chunked(bad[i], strlen(bad[i]), 64, &d) != -1) {
            fprintf(stderr, "  accepted: %s\n", bad[i]);
            test_failures_++;
        }
    }
    /* A size line longer than 1 KiB. */
    static char longext[6000];
    memset(longext, 'a', sizeof longext - 1);
    memcpy(longext, "1;", 2);
    tl_http_chunked d;
    CHECK_EQ_INT(read_chunked(longext, sizeof longext - 1, 100, &d), -1);
}

static const char *norm(const char *t)
{
    static char out[256];
    ssize_t n = tl_http_normalize_path(t, strlen(t), out, sizeof out);
    return n < 0 ? "(refused)" : out;
}

TEST(normalize_path)
{
    CHECK_STR(norm("/"), "/");
    CHECK_STR(norm("/a/b.html?x=/../.."), "/a/b.html");
    CHECK_STR(norm("//a///b//"), "/a/b/");
    CHECK_STR(norm("/a/./b/."), "/a/b/");
    CHECK_STR(norm("/a/b/../c"), "/a/c");
    CHECK_STR(norm("/a/.."), "/");
    CHECK_STR(norm("/a%20b/%41"), "/a b/A");
    CHECK_STR(norm("/a%2fb"), "/a/b");                  /* decoded before normalising */
    CHECK_STR(norm("/a/%2e%2E/b"), "/b");
    CHECK_STR(norm("/..."), "/...");
    CHECK_STR(norm("/.hidden/..x"), "/.hidden/..x");
    CHECK_STR(norm("http://example.com:80/x/../y?q"), "/y");
    CHECK_STR(norm("HTTPS://example.com"), "/");
    CHECK_STR(norm("/a#frag"), "/a");
    CHECK_STR(norm("/.."), "(refused)");
    CHECK_STR(norm("/a/../.."), "(refused)");
    CHECK_STR(norm("/%2e%2e/etc/passwd"), "(refused)");
    CHECK_STR(norm("/%2E%2e%2fetc"), "(refused)");
    CHECK_STR(norm("/a/..%2f..%2fb"), "(refused)");
    CHECK_STR(norm("/a%00.html"), "(refused)");
    CHECK_STR(norm("/a%0a"), "(refused)");
    CHECK_STR(norm("/a%zz"), "(refused)");
    CHECK_STR(norm("/a%4"), "(refused)");
    CHECK_STR(norm("/a%"), "(refused)");
    CHECK_STR(norm("*"), "(refused)");
    CHECK_STR(norm("example.com:443"), "(refused)");
    CHECK_STR(norm(""), "(refused)");
    char small[4];
    CHECK_EQ_INT(tl_http_normalize_path("/abcdef", 7, small, sizeof small), -1);
}

TEST(dates)
{
    char buf[TL_HTTP_DATE_LEN + 1];
    tl_http_format_date(784111777, buf);
    CHECK_STR(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK_EQ_INT(strlen(buf), TL_HTTP_DATE_LEN);
    tl_http_format_date(0, buf);
    CHECK_STR(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    time_t t = 0;
    static const char *const forms[] = {"Sun, 06 Nov 1994 08:49:37 GMT",
                                        "Sunday, 06-Nov-94 08:49:37 GMT",
                                        "Sun Nov  6 08:49:37 1994"};
    for (int i = 0; i < 3; i++) {
        t = 0;
        CHECK_EQ_INT(tl_http_parse_date(forms[i], strlen(forms[i]), &t), 0);
        CHECK_EQ_INT(t, 784111777);
    }
    static const char *const bad[] = {"Sun, 06 Nov 1994 08:49:37", "Sun, 6 Nov 1994 08:49:37 GMT",
                                      "Sun, 06 Foo 1994 08:49:37 GMT", "yesterday", "",
                                      "Sun, 06 Nov 1994 25:49:37 GMT",
                                      "Sun, 06 Nov 1994 08:49:37 GMTx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(tl_http_parse_date(bad[i], strlen(bad[i]), &t), -1);
}

static int range(const char *v, uint64_t size, uint64_t *a, uint64_t *b)
{
    return tl_http_parse_range(v, strlen(v), size, a, b);
}

TEST(ranges)
{
    uint64_t a = 0, b = 0;
    CHECK_EQ_INT(range("bytes=0-99", 1000, &a, &b), 1);
    CHECK(a == 0 && b == 99);
    CHECK_EQ_INT(range("bytes=900-", 1000, &a, &b), 1);
    CHECK(a == 900 && b == 999);
    CHECK_EQ_INT(range("bytes=-100", 1000, &a, &b), 1);
    CHECK(a == 900 && b == 999);
    CHECK_EQ_INT(range("bytes=-5000", 1000, &a, &b), 1);
    CHECK(a == 0 && b == 999);
    CHECK_EQ_INT(range("bytes=500-99999", 1000, &a, &b), 1);
    CHECK(a == 500 && b == 999);
    CHECK_EQ_INT(range("Bytes = 1-2 ", 1000, &a, &b), 0);   /* no space before '=' */
    CHECK_EQ_INT(range("BYTES=1-2 ", 1000, &a, &b), 1);
    CHECK_EQ_INT(range("bytes=1000-", 1000, &a, &b), -1);
    CHECK_EQ_INT(range("bytes=-0", 1000, &a, &b), -1);
    CHECK_EQ_INT(range("bytes=0-0", 0, &a, &b), -1);
    CHECK_EQ_INT(range("bytes=99999999999999999999999-", 1000, &a, &b), -1);
    CHECK_EQ_INT(range("bytes=5-1", 1000, &a, &b), 0);
    CHECK_EQ_INT(range("bytes=0-1,5-6", 1000, &a, &b), 0);
    CHECK_EQ_INT(range("bytes=x-1", 1000, &a, &b), 0);
    CHECK_EQ_INT(range("items=0-1", 1000, &a, &b), 0);
    CHECK_EQ_INT(range("bytes=", 1000, &a, &b), 0);
    CHECK_EQ_INT(range("bytes=1-2x", 1000, &a, &b), 0);
}

TEST(etags_mime_reasons)
{
    const char *e = "\"5f-1a2b\"";
    CHECK(tl_http_etag_match("\"5f-1a2b\"", 9, e, strlen(e)));
    CHECK(tl_http_etag_match("W/\"5f-1a2b\"", 11, e, strlen(e)));   /* weak comparison */
    CHECK(tl_http_etag_match("\"x\", \"5f-1a2b\"", 14, e, strlen(e)));
    CHECK(tl_http_etag_match("*", 1, e, strlen(e)));
    CHECK(!tl_http_etag_match("\"5f-1a2c\"", 9, e, strlen(e)));
    CHECK(!tl_http_etag_match("5f-1a2b", 7, e, strlen(e)));          /* not quoted */
    CHECK(tl_http_etag_match("\"a,b\", \"5f-1a2b\"", 16, e, strlen(e)));
    CHECK_STR(tl_http_mime_type("/x/index.HTML", 13), "text/html; charset=utf-8");
    CHECK_STR(tl_http_mime_type("/a.b/c", 6), "application/octet-stream");
    CHECK_STR(tl_http_mime_type("/img.png", 8), "image/png");
    CHECK_STR(tl_http_mime_type("/noext", 6), "application/octet-stream");
    CHECK_STR(tl_http_mime_type("/file.", 6), "application/octet-stream");
    CHECK_STR(tl_http_reason(404), "Not Found");
    CHECK_STR(tl_http_reason(431), "Request Header Fields Too Large");
    CHECK_STR(tl_http_reason(299), "Unknown");
}

static int parse_resp(const char *s, tl_http_response *r, tl_http_header *h, size_t maxh)
{
    memset(r, 0, sizeof *r);
    r->headers = h;
    r->max_headers = maxh;
    return tl_http_parse_response(s, strlen(s), r);
}

TEST(responses_and_their_framing)
{
    tl_http_header h[16];
    tl_http_response r;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
    CHECK_EQ_INT(parse_resp(s, &r, h, 16), strlen(s) - 5);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.minor_version, 1);
    CHECK(span_is(r.reason, r.reason_len, "OK"));
    CHECK(span_is(tl_http_find_in(h, r.num_headers, "server")->value, 1, "x"));
    for (size_t i = 0; i + 5 < strlen(s); i++) {
        tl_http_response q = {.headers = h, .max_headers = 16};
        if (tl_http_parse_response(s, i, &q) != TL_HTTP_INCOMPLETE) {
            fprintf(stderr, "  prefix %zu was not incomplete\n", i);
            test_failures_++;
            break;
        }
    }
    tl_http_body b;
    CHECK_EQ_INT(tl_http_response_body(&r, false, &b), 0);
    CHECK(!b.none && !b.chunked && !b.until_close && b.content_length == 5 && b.keep_alive);
    CHECK_EQ_INT(tl_http_response_body(&r, true, &b), 0);   /* HEAD: no body */
    CHECK(b.none);
    CHECK(parse_resp("HTTP/1.0 204\r\n\r\n", &r, h, 16) > 0 && r.status == 204 && !r.reason_len);
    CHECK(tl_http_response_body(&r, false, &b) == 0 && b.none && !b.keep_alive);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &r, h, 16) > 0);
    CHECK(tl_http_response_body(&r, false, &b) == 0 && b.chunked && b.keep_alive);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", &r, h, 16) > 0);
    CHECK(tl_http_response_body(&r, false, &b) == 0 && b.until_close && !b.keep_alive);
    CHECK(parse_resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", &r, h, 16) > 0);
    CHECK(tl_http_response_body(&r, false, &b) == 0 && b.none);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                     &r, h, 16) > 0);
    CHECK_EQ_INT(tl_http_response_body(&r, false, &b), -1);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", &r, h, 16) > 0);
    CHECK_EQ_INT(tl_http_response_body(&r, false, &b), -1);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", &r, h, 16) > 0);
    CHECK_EQ_INT(tl_http_response_body(&r, false, &b), 0);
    CHECK(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &r, h, 16) > 0);
    CHECK_EQ_INT(tl_http_response_body(&r, false, &b), -1);
    CHECK_EQ_INT(parse_resp("HTTP/2 200 OK\r\n\r\n", &r, h, 16), TL_HTTP_ERROR);
    CHECK_EQ_INT(parse_resp("HTTP/1.1 2000 OK\r\n\r\n", &r, h, 16), TL_HTTP_ERROR);
    CHECK_EQ_INT(parse_resp("HTTP/1.1 099 x\r\n\r\n", &r, h, 16), TL_HTTP_ERROR);
    CHECK_EQ_INT(parse_resp("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", &r, h, 16), TL_HTTP_ERROR);
    CHECK_EQ_INT(parse_resp("SSH-2.0-OpenSSH\r\n", &r, h, 16), TL_HTTP_ERROR);
}

static void collect(void *arg, const uint8_t *p, size_t n)
{
    char *out = arg;
    strncat(out, (const char *)p, n);
}

TEST(chunked_decode_gives_the_data)
{
    const char *s = "5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n";
    for (size_t step = 1; step <= strlen(s); step++) {
        char out[64] = "";
        tl_http_chunked d = {0};
        size_t at = 0;
        while (at < strlen(s) && !d.done) {
            size_t n = strlen(s) - at < step ? strlen(s) - at : step;
            ssize_t r = tl_http_chunked_decode(&d, (const uint8_t *)s + at, n, collect, out);
            REQUIRE(r >= 0);
            at += (size_t)r;
        }
        if (strcmp(out, "hello, world") != 0 || !d.done) {
            fprintf(stderr, "  step %zu: \"%s\"\n", step, out);
            test_failures_++;
            break;
        }
    }
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(simple_request);
    RUN(lf_only_empty_lines_and_empty_value);
    RUN(every_prefix_is_incomplete);
    RUN(versions);
    RUN(request_line_strictness);
    RUN(field_strictness);
    RUN(too_many_fields_is_431);
    RUN(incomplete_status_and_head_end);
    RUN(content_length_rules);
    RUN(transfer_encoding_rules);
    RUN(host_connection_expect);
    RUN(chunked_bodies_split_anywhere);
    RUN(chunked_refusals);
    RUN(normalize_path);
    RUN(dates);
    RUN(ranges);
    RUN(etags_mime_reasons);
    RUN(responses_and_their_framing);
    RUN(chunked_decode_gives_the_data);
    TEST_MAIN_END();
}
