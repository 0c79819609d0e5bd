/*
 * test_http_smuggling.c - raw requests where two HTTP/1.1 parsers may disagree about where a
 * line, a field, a head or a body ends (request smuggling), each with the verdict tlsloop's server
 * side must reach (tlsloop/http.h). The cases were written for tlsloop in the spirit of llhttp's
 * request tests and picohttpparser's test.c (request lines, methods and targets, versions, field
 * names and values, obs-fold, bare CR, lone LF, Content-Length and Transfer-Encoding, chunk sizes,
 * extensions and trailers, pipelining); none is copied from them.
 *
 * A verdict is what a server does with the bytes: ACCEPT (the head parses, its framing checks, its
 * body is complete; `next` is then what must remain: the next request, read apart), a status
 * (400, 431, 501, 505, 417), or INC (a valid beginning: more bytes are needed). Each case runs in
 * the default (strict) mode and with TL_HTTP_LONE_LF (the lenient column). In every case
 * tl_http_scan_head, fed whole and a byte at a time, reaches the parser's verdict on the head.
 * A second table holds heads that never end: they must be refused as soon as the bad byte shows.
 *
 * The file also builds against a tlsloop without TL_HTTP_LONE_LF (to show the cases failing
 * there): the lenient column and the scanner are then skipped, and the early refusals are judged
 * the way that server read heads (only once tl_http_head_ended).
 */
#include <string.h>

#include <tlsloop/http.h>

#include "test.h"

enum { ACCEPT = 200, INC = -2, SAME = 0 };
#define MAXH 32

typedef struct kase {
    const char *raw;
    size_t len;
    int strict, lenient;   /* lenient SAME: as strict */
    const char *next;      /* ACCEPT: the bytes left after the request (NULL: not checked) */
} kase;

#define C(raw, strict, lenient, next) {raw, sizeof(raw) - 1, strict, lenient, next}
#define H "Host: a\r\n"
#define G "GET / HTTP/1.1\r\n" H
#define P "POST / HTTP/1.1\r\n" H
#define TE "Transfer-Encoding: chunked\r\n"
#define NEXT "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"

static const kase cases[] = {
    /* request line: methods, targets, spaces */
    C(G "\r\n", ACCEPT, SAME, ""),
    C("OPTIONS * HTTP/1.1\r\n" H "\r\n", ACCEPT, SAME, ""),
    C("CONNECT a:443 HTTP/1.1\r\n" H "\r\n", ACCEPT, SAME, ""),
    C("GET http://a/x?y=1 HTTP/1.1\r\n" H "\r\n", ACCEPT, SAME, ""),
    C("GET /a?b#c HTTP/1.1\r\n" H "\r\n", ACCEPT, SAME, ""),
    C("M-SEARCH~x / HTTP/1.1\r\n" H "\r\n", ACCEPT, SAME, ""),   /* any token is a method */
    C("GET  / HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET / HTTP/1.1 \r\n" H "\r\n", 400, SAME, NULL),
    C("GET /\t HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET\t/ HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C(" GET / HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("G\0T / HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("G(T / HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET\v/ HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET /\x7f HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET /\x80 HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET /a\0b HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET /a b HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET  HTTP/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET /\r\n\r\n", 400, SAME, NULL),                         /* HTTP/0.9 */
    /* versions */
    C("GET / HTTP/1.0\r\n\r\n", ACCEPT, SAME, ""),
    C("GET / HTTP/1.9\r\n" H "\r\n", ACCEPT, SAME, ""),         /* read as 1.1 */
    C("GET / HTTP/2.0\r\n" H "\r\n", 505, SAME, NULL),
    C("GET / HTTP/0.9\r\n\r\n", 505, SAME, NULL),
    C("GET / HTTP/1.01\r\n" H "\r\n", 400, SAME, NULL),
    C("GET / HTTP/01.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET / HTTP/1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET / http/1.1\r\n" H "\r\n", 400, SAME, NULL),
    C("GET / HTTP/1.1\r\r\n" H "\r\n", 400, SAME, NULL),
    C("GET / HTTP/1.1\rHost: a\r\n\r\n", 400, SAME, NULL),
    /* line ends: CRLF by default, a lone LF only when asked for */
    C("GET / HTTP/1.1\n" H "\r\n", 400, ACCEPT, ""),
    C(G "\n", 400, ACCEPT, ""),
    C("GET / HTTP/1.1\nHost: a\n\n", 400, ACCEPT, ""),
    C("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400, ACCEPT, ""),
    C("GET / HTTP/1.1\r\nHost: a\n\r\n", 400, ACCEPT, ""),
    C("\r\n" G "\r\n", ACCEPT, SAME, ""),                        /* an empty line first */
    C("\n" G "\r\n", 400, ACCEPT, ""),
    C("\r" G "\r\n", 400, SAME, NULL),
    C(G "\r", INC, SAME, NULL),
    C(G "\rX", 400, SAME, NULL),
    /* the case: a front end keeping the LF inside Dummy's value sees no Content-Length */
    C(G "Dummy: x\nContent-Length: 23\r\n\r\nGET /admin HTTP/1.1\r\n\r\n", 400, ACCEPT, ""),
    C(G "Dummy: x\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" NEXT, 400, ACCEPT, NEXT),
    /* field names */
    C(G "X-Empty:\r\n\r\n", ACCEPT, SAME, ""),
    C(G "X:   padded \t\r\n\r\n", ACCEPT, SAME, ""),
    C(G "X: caf\xc3\xa9\tok\r\n\r\n", ACCEPT, SAME, ""),       /* obs-text and tab in a value */
    C("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, SAME, NULL),
    C("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, SAME, NULL),
    C("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, SAME, NULL),
    C(G ": a\r\n\r\n", 400, SAME, NULL),
    C(G "Ho st: a\r\n\r\n", 400, SAME, NULL),
    C(G "X@: a\r\n\r\n", 400, SAME, NULL),
    C(G "X/Y: a\r\n\r\n", 400, SAME, NULL),
    C(G "\"X\": a\r\n\r\n", 400, SAME, NULL),
    C(G "X\0: a\r\n\r\n", 400, SAME, NULL),
    C(G "\xc3\xa9: a\r\n\r\n", 400, SAME, NULL),
    C(G "NoColon\r\n\r\n", 400, SAME, NULL),
    C(G "X\r\n: a\r\n\r\n", 400, SAME, NULL),
    /* field values */
    C(G "X: a\r\n b\r\n\r\n", 400, SAME, NULL),                 /* obs-fold */
    C(G "X: a\r\n\tb\r\n\r\n", 400, SAME, NULL),
    C(G "X: a\rb\r\n\r\n", 400, SAME, NULL),                    /* bare CR */
    C(G "X: a\0b\r\n\r\n", 400, SAME, NULL),
    C(G "X: a\x01\r\n\r\n", 400, SAME, NULL),
    C(G "X: a\x7f\r\n\r\n", 400, SAME, NULL),
    C(G "X: a\x0b\r\n\r\n", 400, SAME, NULL),
    C(G "X: a\r\r\n\r\n", 400, SAME, NULL),
    /* Host and Expect */
    C("GET / HTTP/1.1\r\n\r\n", 400, SAME, NULL),
    C(G H "\r\n", 400, SAME, NULL),
    C("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, SAME, NULL),
    C(G "Expect: 100-continue\r\n\r\n", ACCEPT, SAME, ""),
    C(G "Expect: 200-ok\r\n\r\n", 417, SAME, NULL),
    /* Content-Length */
    C(P "Content-Length: 5\r\n\r\nhello", ACCEPT, SAME, ""),
    C(P "Content-Length: 5\r\n\r\nhello" NEXT, ACCEPT, SAME, NEXT),
    C(P "Content-Length:  05 \r\n\r\nhello", ACCEPT, SAME, ""),
    C(P "Content-Length: 0\r\n\r\n" NEXT, ACCEPT, SAME, NEXT),
    C(P "Content-Length: 5\r\n\r\nhel", INC, SAME, NULL),
    C(P "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, SAME, NULL),
    C(P "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, SAME, NULL),
    C(P "Content-Length: 5, 5\r\n\r\nhello", 400, SAME, NULL),
    C(P "Content-Length: +5\r\n\r\nhello", 400, SAME, NULL),
    C(P "Content-Length: -1\r\n\r\n", 400, SAME, NULL),
    C(P "Content-Length: 0x5\r\n\r\nhello", 400, SAME, NULL),
    C(P "Content-Length: 5 5\r\n\r\nhello", 400, SAME, NULL),
    C(P "Content-Length:\r\n\r\n", 400, SAME, NULL),
    C(P "Content-Length: 99999999999999999999\r\n\r\n", 400, SAME, NULL),
    C(P "Content-Length : 5\r\n\r\nhello", 400, SAME, NULL),
    C(P "Content-Length:\r\n 5\r\n\r\nhello", 400, SAME, NULL),
    C(P "Content_Length: 5\r\n\r\n" NEXT, ACCEPT, SAME, NEXT),  /* another field: no body */
    /* Transfer-Encoding */
    C(P TE "\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\n0\r\n\r\n" NEXT, ACCEPT, SAME, NEXT),
    C(P "Transfer-Encoding: Chunked \r\n\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P "Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "Content-Length: 5\r\n\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P "Content-Length: 5\r\n" TE "\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE TE "\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P "Transfer-Encoding: chunked, gzip\r\n\r\n", 400, SAME, NULL),
    C(P "Transfer-Encoding: gzip, chunked\r\n\r\n", 501, SAME, NULL),
    C(P "Transfer-Encoding: chunked, chunked\r\n\r\n", 501, SAME, NULL),
    C(P "Transfer-Encoding: xchunked\r\n\r\n", 400, SAME, NULL),
    C(P "Transfer-Encoding: identity\r\n\r\n", 400, SAME, NULL),
    C(P "Transfer-Encoding: chunked\x0b\r\n\r\n", 400, SAME, NULL),
    C(P "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400, SAME, NULL),
    C("POST / HTTP/1.0\r\n" TE "\r\n0\r\n\r\n", 400, SAME, NULL),
    /* chunk sizes and data */
    C(P TE "\r\n5\r\nhello\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\nA\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\n000000000000000000005\r\nhello\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\n5\r\nhel", INC, SAME, NULL),
    C(P TE "\r\n5\nhello\r\n0\r\n\r\n", 400, ACCEPT, ""),        /* lone LF after the size */
    C(P TE "\r\n5\r\nhello\n0\r\n\r\n", 400, ACCEPT, ""),        /* ... after the data */
    C(P TE "\r\n5\r\nhelloX\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n5\r\nhello\r\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n5\r\r\nhello\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n 5\r\nhello\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n5 \r\nhello\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n-5\r\nhello\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n0x5\r\nhello\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n+5\r\nhello\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n1000000000000000\r\n", 400, SAME, NULL),
    C(P TE "\r\nffffffffffffffffff\r\n", 400, SAME, NULL),
    /* chunk extensions (RFC 9112 7.1.1) */
    C(P TE "\r\n5;a\r\nhello\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\n5;a=b\r\nhello\r\n0;c\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\n5 ; a = b ; c\r\nhello\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\n5;a=\"b c;d\"\r\nhello\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\n5;a=\"b\\\"c\"\r\nhello\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\n5;a=\"\" ;b\r\nhello\r\n0\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\n2;\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),       /* no name */
    C(P TE "\r\n2; \r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;=b\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a=\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a;\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a=\"b\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),  /* unclosed quote */
    C(P TE "\r\n2;a=\"b\\\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a=\"b\"c\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a=b c\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a b\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a@b\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a\x01\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a=\"\x01\"\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a=\"\\\x01\"\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a\rb\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n2;a\nhi\r\n0\r\n\r\n", 400, ACCEPT, ""),
    C(P TE "\r\n2 2\r\nhi\r\n0\r\n\r\n", 400, SAME, NULL),
    /* trailers: header fields */
    C(P TE "\r\n0\r\nX: y\r\nZ:\r\n\r\n", ACCEPT, SAME, ""),
    C(P TE "\r\n0\r\nX: y\r\n\r\n" NEXT, ACCEPT, SAME, NEXT),
    C(P TE "\r\n0\r\nX: y\r\n z\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n0\r\n z\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n0\r\nXy\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n0\r\nX : y\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n0\r\n: y\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n0\r\nX: a\x01\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n0\r\nX: a\rb\r\n\r\n", 400, SAME, NULL),
    C(P TE "\r\n0\r\nX: y\n\r\n", 400, ACCEPT, ""),
    C(P TE "\r\n0\r\n\n", 400, ACCEPT, ""),
    C(P TE "\r\n0\r\n\r\r\n", 400, SAME, NULL),
};

/* Heads that never end: refused when the bad byte arrives (status), or still valid (INC). */
typedef struct partial {
    const char *raw;
    size_t len;
    int status;
} partial;
#define PA(raw, status) {raw, sizeof(raw) - 1, status}
static const partial partials[] = {
    PA("G\x01", 400),
    PA("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),     /* a TLS ClientHello */
    PA("GET /\x01", 400),
    PA("GET / HTXP", 400),
    PA("GET / HTTP/3.0\r\n", 505),
    PA("GET / HTTP/1.1\r\nHo st", 400),
    PA("GET / HTTP/1.1\r\nHost\t", 400),
    PA("GET / HTTP/1.1\r\nHost: a\r\n fold", 400),
    PA("GET / HTTP/1.1\r\nHost: a\nX", 400),                     /* lone LF */
    PA("GET / HTTP/1.1\nHost: a", 400),
    PA("GET / HTTP/1.1\r\nX: a\rb", 400),
    PA("GET / HTTP/1.1\r\nX: \x7f", 400),
    PA("GET / HTTP/1.1\r\nX\x01", 400),
    PA("GET / HTTP/1.1\r\nHost: a\r\nX: a", INC),
    PA("GET /very/long/target?and=more", INC),
    PA("\r\n\r\nGET", INC),
};

static int lenient_of(const kase *k)
{
    return k->lenient == SAME ? k->strict : k->lenient;
}

static void show(const char *raw, size_t len)
{
    for (size_t i = 0; i < len && i < 160; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fputc('\n', stderr);
}

#ifdef TL_HTTP_LONE_LF
/* The scanner's answer for raw, fed whole and a byte at a time (they must agree). */
static int scan_verdict(const char *raw, size_t len, unsigned flags, int *status)
{
    tl_http_scan whole = {.flags = flags}, bytes = {.flags = flags};
    int w = tl_http_scan_head(&whole, raw, len), b = TL_HTTP_INCOMPLETE;
    for (size_t i = 1; i <= len && b == TL_HTTP_INCOMPLETE; i++)
        b = tl_http_scan_head(&bytes, raw, i);
    if (w != b || (w == TL_HTTP_ERROR && whole.error_status != bytes.error_status)) {
        fprintf(stderr, "  scan whole %d (%d), a byte at a time %d (%d): ", w,
                whole.error_status, b, bytes.error_status);
        show(raw, len);
        test_failures_++;
    }
    *status = whole.error_status;
    return w;
}
#endif

/* What a server does with raw (see the top); *rest: bytes after an accepted request. */
static int verdict(const char *raw, size_t len, unsigned flags, size_t *rest)
{
    tl_http_header h[MAXH];
    tl_http_request req = {.headers = h, .max_headers = MAXH};
#ifdef TL_HTTP_LONE_LF
    int n = tl_http_parse_request_ex(raw, len, &req, flags);
    int sst, s = scan_verdict(raw, len, flags, &sst);
    /* The parser's 431 comes at the field over its array, wherever the scanner ends. */
    bool agree = n == TL_HTTP_ERROR ? (s == TL_HTTP_ERROR && sst == req.error_status) ||
                                          req.error_status == 431
                                    : s == n;
    if (!agree) {
        fprintf(stderr, "  scan %d (%d) but parse %d (%d): ", s, sst, n, req.error_status);
        show(raw, len);
        test_failures_++;
    }
#else
    (void)flags;
    int n = tl_http_parse_request(raw, len, &req);
#endif
    if (n == TL_HTTP_ERROR)
        return req.error_status;
    if (n == TL_HTTP_INCOMPLETE)
        return INC;
    tl_http_message m;
    int bad = tl_http_check_request(&req, &m);
    if (bad)
        return bad;
    size_t at = (size_t)n;
    if (m.chunked) {
        tl_http_chunked d = {0};
#ifdef TL_HTTP_LONE_LF
        tl_http_chunked_init(&d, flags);
#endif
        ssize_t r = tl_http_chunked_read(&d, (const uint8_t *)raw + at, len - at);
        if (r < 0)
            return 400;
        if (!d.done)
            return INC;
        at += (size_t)r;
    } else if (m.content_length > 0) {
        if (len - at < (size_t)m.content_length)
            return INC;
        at += (size_t)m.content_length;
    }
    *rest = len - at;
    return ACCEPT;
}

#ifdef TL_HTTP_LONE_LF
#define TL_HTTP_LONE_LF_OR_0 TL_HTTP_LONE_LF
#else
#define TL_HTTP_LONE_LF_OR_0 0
#endif

static void check_case(const kase *k, bool lenient)
{
    size_t rest = 0;
    int want = lenient ? lenient_of(k) : k->strict;
    int got = verdict(k->raw, k->len, lenient ? TL_HTTP_LONE_LF_OR_0 : 0, &rest);
    const char *next = k->next;
    bool ok = got == want && (got != ACCEPT || !next ||
                              (rest == strlen(next) && !memcmp(k->raw + k->len - rest, next, rest)));
    if (!ok) {
        fprintf(stderr, "  %s: wanted %d, got %d (%zu bytes left): ", lenient ? "lenient" : "strict",
                want, got, rest);
        show(k->raw, k->len);
        test_failures_++;
    }
}

TEST(strict_verdicts)
{
    size_t n = sizeof cases / sizeof cases[0];
    CHECK(n >= 100);
    for (size_t i = 0; i < n; i++)
        check_case(&cases[i], false);
}

TEST(lenient_verdicts)
{
#ifdef TL_HTTP_LONE_LF
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i], true);
#else
    fprintf(stderr, "  (no TL_HTTP_LONE_LF in this tlsloop: skipped)\n");
#endif
}

/* The server's view of a head that has not ended: the scanner, or (without one) a parse only
 * once tl_http_head_ended says so, as that server did. */
static int early(const char *raw, size_t len)
{
    tl_http_header h[MAXH];
    tl_http_request req = {.headers = h, .max_headers = MAXH};
#ifdef TL_HTTP_LONE_LF
    int st, s = scan_verdict(raw, len, 0, &st);
    (void)req;
    return s == TL_HTTP_ERROR ? st : s == TL_HTTP_INCOMPLETE ? INC : ACCEPT;
#else
    if (!tl_http_head_ended(raw, len, 0))
        return INC;
    int n = tl_http_parse_request(raw, len, &req);
    return n == TL_HTTP_ERROR ? req.error_status : n == TL_HTTP_INCOMPLETE ? INC : ACCEPT;
#endif
}

TEST(refused_before_the_head_ends)
{
    for (size_t i = 0; i < sizeof partials / sizeof partials[0]; i++) {
        const partial *p = &partials[i];
        int got = early(p->raw, p->len);
        if (got != p->status) {
            fprintf(stderr, "  wanted %d, got %d: ", p->status, got);
            show(p->raw, p->len);
            test_failures_++;
        }
    }
}

TEST(bounds)
{
    /* A chunk-size line of more than 1 KiB (extensions and CRLF included) is refused; one of
     * 1 KiB is read. So are more fields than the caller's array holds (431). */
    static char body[1200 + 64];
    for (int over = 0; over < 2; over++) {
        size_t line = over ? 1023 : 1022;   /* bytes before the CRLF */
        memset(body, 'a', sizeof body);
        memcpy(body, "1;", 2);
        memcpy(body + line, "\r\nx\r\n0\r\n\r\n", 10);
        tl_http_chunked d = {0};
        ssize_t r = tl_http_chunked_read(&d, (const uint8_t *)body, line + 10);
        CHECK_EQ_INT(r, over ? TL_HTTP_ERROR : (ssize_t)line + 10);
    }
    /* A trailer section over 16 KiB is refused. */
    static char trailers[17000];
    size_t t = 0;
    t += (size_t)snprintf(trailers, sizeof trailers, "0\r\n");
    while (t < 16500)
        t += (size_t)snprintf(trailers + t, sizeof trailers - t, "X-Trailer: 0123456789\r\n");
    t += (size_t)snprintf(trailers + t, sizeof trailers - t, "\r\n");
    tl_http_chunked d = {0};
    CHECK_EQ_INT(tl_http_chunked_read(&d, (const uint8_t *)trailers, t), TL_HTTP_ERROR);
    char head[4096];
    size_t n = (size_t)snprintf(head, sizeof head, G);
    for (int i = 0; i < MAXH; i++)
        n += (size_t)snprintf(head + n, sizeof head - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(head + n, sizeof head - n, "\r\n");
    size_t rest;
    CHECK_EQ_INT(verdict(head, n, 0, &rest), 431);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(strict_verdicts);
    RUN(lenient_verdicts);
    RUN(refused_before_the_head_ends);
    RUN(bounds);
    TEST_MAIN_END();
}
