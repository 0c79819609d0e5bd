/* fuzz_http.c - the HTTP/1.1 request parser and its helpers (tlsloop/http.h) on arbitrary bytes,
 * each broken invariant an abort (the list: fuzz/README.md, "What is checked"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tlsloop/http.h>

#define FAIL(...)                                                                               \
    do {                                                                                        \
        fprintf(stderr, "INVARIANT FAILED: " __VA_ARGS__);                                      \
        fprintf(stderr, "\n");                                                                  \
        abort();                                                                                \
    } while (0)

#define MAXH 64

static bool token_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_span(const char *p, size_t n, const char *head, size_t len, const char *what)
{
    if (n && (p < head || p + n > head + len))
        FAIL("%s lies outside the head", what);
}

static void check_path(const char *target, size_t len)
{
    char out[8192];
    ssize_t n = tl_http_normalize_path(target, len, out, sizeof out);
    if (n < 0)
        return;
    if ((size_t)n != strlen(out) || out[0] != '/')
        FAIL("normalised path \"%s\" is not absolute or has a wrong length", out);
    for (ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == 0x7f)
            FAIL("normalised path holds a control character");
        if (c == '/' && i + 1 < n && out[i + 1] == '/')
            FAIL("normalised path \"%s\" has an empty segment", out);
        if (c == '/') {
            const char *s = out + i + 1, *e = strchr(s, '/');
            size_t seg = e ? (size_t)(e - s) : strlen(s);
            if ((seg == 1 && s[0] == '.') || (seg == 2 && s[0] == '.' && s[1] == '.'))
                FAIL("normalised path \"%s\" keeps a dot segment", out);
        }
    }
}

static void check_chunked(const uint8_t *body, size_t len, size_t step, unsigned flags)
{
    tl_http_chunked whole, parts;
    tl_http_chunked_init(&whole, flags);
    tl_http_chunked_init(&parts, flags);
    ssize_t w = tl_http_chunked_read(&whole, body, len);
    if (w != TL_HTTP_ERROR && (w < 0 || (size_t)w > len || ((size_t)w < len && !whole.done)))
        FAIL("chunked: consumed %zd of %zu (done %d)", w, len, whole.done);
    size_t at = 0;
    ssize_t p = 0;
    while (at < len && !parts.done) {
        size_t piece = len - at < step ? len - at : step;
        p = tl_http_chunked_read(&parts, body + at, piece);
        if (p < 0)
            break;
        at += (size_t)p;
    }
    bool whole_err = w == TL_HTTP_ERROR, parts_err = p == TL_HTTP_ERROR;
    if (whole_err != parts_err)
        FAIL("chunked: error whole %d, in %zu-byte pieces %d", whole_err, step, parts_err);
    if (!whole_err && ((size_t)w != at || whole.done != parts.done || whole.total != parts.total))
        FAIL("chunked: whole and pieces differ (%zd/%zu, total %llu/%llu)", w, at,
             (unsigned long long)whole.total, (unsigned long long)parts.total);
}

/* The scanner against the parser's answer n (and status) for the same bytes and flags. */
static void check_scan(const char *buf, size_t size, unsigned flags, int n, int status)
{
    tl_http_scan whole = {.flags = flags}, bytes = {.flags = flags};
    int w = tl_http_scan_head(&whole, buf, size), b = TL_HTTP_INCOMPLETE;
    for (size_t i = 1; i <= size && b == TL_HTTP_INCOMPLETE; i++)
        b = tl_http_scan_head(&bytes, buf, i);
    if (w != b || (w == TL_HTTP_ERROR && (whole.error_status != bytes.error_status || !whole.error)))
        FAIL("scan whole %d (%d), a byte at a time %d (%d)", w, whole.error_status, b,
             bytes.error_status);
    /* The parser's 431 comes at the field over its array, wherever the scanner ends. */
    bool agree = n == TL_HTTP_ERROR ? (w == TL_HTTP_ERROR && whole.error_status == status) ||
                                          status == 431
                                    : w == n;
    if (!agree)
        FAIL("scan %d (%d), parse %d (%d), flags %u", w, whole.error_status, n, status, flags);
}

static void check_fields(const tl_http_header *h)
{
    uint64_t a, b;
    uint64_t sizes[] = {0, 1, 1000, UINT64_MAX / 2};
    for (size_t i = 0; i < 4; i++) {
        int r = tl_http_parse_range(h->value, h->value_len, sizes[i], &a, &b);
        if (r == 1 && (a > b || b >= sizes[i]))
            FAIL("range [%llu, %llu] of %llu bytes", (unsigned long long)a,
                 (unsigned long long)b, (unsigned long long)sizes[i]);
    }
    time_t t;
    if (tl_http_parse_date(h->value, h->value_len, &t) == 0 && t >= 0 && t < 253402300800) {
        char buf[TL_HTTP_DATE_LEN + 1];
        time_t back;
        tl_http_format_date(t, buf);
        if (tl_http_parse_date(buf, strlen(buf), &back) != 0 || back != t)
            FAIL("date %lld did not survive formatting (%s)", (long long)t, buf);
    }
    (void)tl_http_etag_match(h->value, h->value_len, "\"x\"", 3);
    (void)tl_http_mime_type(h->value, h->value_len);
}

/* The same bytes as a response: answers in range, fields inside the head, the framing check
 * consistent, every proper prefix incomplete. */
static void check_response(const char *buf, size_t size)
{
    tl_http_header hs[MAXH];
    tl_http_response r = {.headers = hs, .max_headers = MAXH};
    int n = tl_http_parse_response(buf, size, &r);
    if (n == TL_HTTP_ERROR) {
        if (!r.error)
            FAIL("response error without a reason");
        return;
    }
    if (n == TL_HTTP_INCOMPLETE)
        return;
    if (n <= 0 || (size_t)n > size || r.status < 100 || r.status > 999)
        FAIL("response answer %d (status %d) for %zu bytes", n, r.status, size);
    check_span(r.reason, r.reason_len, buf, (size_t)n, "the reason");
    for (size_t i = 0; i < r.num_headers; i++) {
        check_span(hs[i].name, hs[i].name_len, buf, (size_t)n, "a response field name");
        check_span(hs[i].value, hs[i].value_len, buf, (size_t)n, "a response field value");
    }
    for (int i = 0; i < n && i < 512; i++) {
        tl_http_response q = {.headers = hs, .max_headers = MAXH};
        if (tl_http_parse_response(buf, (size_t)i, &q) != TL_HTTP_INCOMPLETE)
            FAIL("a %d-byte prefix of a %d-byte response head was not incomplete", i, n);
    }
    tl_http_response again = {.headers = hs, .max_headers = MAXH};
    tl_http_parse_response(buf, (size_t)n, &again);
    for (int head = 0; head < 2; head++) {
        tl_http_body b;
        int rc = tl_http_response_body(&again, head, &b);
        if (rc != 0 && (rc != -1 || !b.error))
            FAIL("response body check %d", rc);
        if (rc == 0 && (b.none + b.chunked + b.until_close + (b.content_length >= 0 && !b.none &&
                                                              !b.chunked)) != 1)
            FAIL("not exactly one framing (none %d chunked %d close %d length %lld)", b.none,
                 b.chunked, b.until_close, (long long)b.content_length);
        if (rc == 0 && b.until_close && b.keep_alive)
            FAIL("a body until close on a connection kept alive");
    }
}

/* The request checks in one mode; returns the parser's answer. */
static int check_request(const uint8_t *data, size_t size, unsigned flags)
{
    const char *buf = (const char *)data;
    tl_http_header hs[MAXH];
    tl_http_request req = {.headers = hs, .max_headers = MAXH};
    int n = flags ? tl_http_parse_request_ex(buf, size, &req, flags)
                  : tl_http_parse_request(buf, size, &req);
    check_scan(buf, size, flags, n, req.error_status);
    if (n == TL_HTTP_ERROR) {
        if ((req.error_status != 400 && req.error_status != 431 && req.error_status != 505) ||
            !req.error)
            FAIL("error status %d", req.error_status);
        return n;
    }
    if (n == TL_HTTP_INCOMPLETE) {
        int st = tl_http_incomplete_status(buf, size);
        if (st != 414 && st != 431)
            FAIL("incomplete status %d", st);
        return n;
    }
    if (n <= 0 || (size_t)n > size)
        FAIL("answer %d for %zu bytes", n, size);
    size_t len = (size_t)n;
    if (!tl_http_head_ended(buf, len, 0))
        FAIL("a parsed head of %zu bytes has not ended by tl_http_head_ended", len);
    if (!(flags & TL_HTTP_LONE_LF))
        for (size_t i = 0; i < len; i++)
            if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
                FAIL("a strict head holds a lone LF at %zu", i);

    check_span(req.method, req.method_len, buf, len, "the method");
    check_span(req.target, req.target_len, buf, len, "the target");
    if (!req.method_len || !req.target_len || req.minor_version < 0 || req.minor_version > 1)
        FAIL("empty method or target, or version 1.%d", req.minor_version);
    for (size_t i = 0; i < req.method_len; i++)
        if (!token_char((unsigned char)req.method[i]))
            FAIL("method byte 0x%02x", (unsigned char)req.method[i]);
    for (size_t i = 0; i < req.num_headers; i++) {
        const tl_http_header *h = &hs[i];
        check_span(h->name, h->name_len, buf, len, "a field name");
        check_span(h->value, h->value_len, buf, len, "a field value");
        if (!h->name_len)
            FAIL("empty field name");
        for (size_t k = 0; k < h->name_len; k++)
            if (!token_char((unsigned char)h->name[k]))
                FAIL("field name byte 0x%02x", (unsigned char)h->name[k]);
        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char c = (unsigned char)h->value[k];
            if (c == '\r' || c == '\n' || c == 0 || c == 0x7f || (c < 0x20 && c != '\t'))
                FAIL("field value byte 0x%02x", c);
        }
        if (h->value_len && (h->value[0] == ' ' || h->value[h->value_len - 1] == ' ' ||
                             h->value[0] == '\t' || h->value[h->value_len - 1] == '\t'))
            FAIL("field value not trimmed");
        check_fields(h);
    }

    /* What follows the head does not change it; every proper prefix is incomplete. */
    char *more = malloc(len + 9);
    memcpy(more, buf, len);
    memcpy(more + len, "GARBAGE\r\n", 9);
    tl_http_header hs2[MAXH];
    tl_http_request again = {.headers = hs2, .max_headers = MAXH};
    if (tl_http_parse_request_ex(more, len + 9, &again, flags) != n ||
        again.num_headers != req.num_headers)
        FAIL("the head changed with bytes after it");
    for (size_t i = 0; i < len && i < 1024; i++)
        if (tl_http_parse_request_ex(more, i, &again, flags) != TL_HTTP_INCOMPLETE)
            FAIL("a %zu-byte prefix of a %zu-byte head was not incomplete", i, len);
    free(more);

    tl_http_message m;
    int st = tl_http_check_request(&req, &m);
    if (st != 0 && st != 400 && st != 417 && st != 501)
        FAIL("check status %d", st);
    if (st != m.error_status || (st && (m.keep_alive || !m.error)))
        FAIL("check status %d with message status %d, keep-alive %d", st, m.error_status,
             m.keep_alive);
    if (st == 0 && m.chunked && m.content_length >= 0)
        FAIL("chunked with a Content-Length passed the check");
    check_path(req.target, req.target_len);
    if (size > len)
        check_chunked(data + len, size - len, 1 + data[len] % 7, flags);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_response((const char *)data, size);
    int strict = check_request(data, size, 0);
    int lenient = check_request(data, size, TL_HTTP_LONE_LF);
    if (strict > 0 && lenient != strict)
        FAIL("strict mode read a %d-byte head, lenient mode answered %d", strict, lenient);
    if (strict > 0 && (size_t)strict < size) {
        /* What strict mode reads as a chunked body, lenient mode reads the same. */
        tl_http_chunked a = {0}, b;
        tl_http_chunked_init(&b, TL_HTTP_LONE_LF);
        ssize_t ra = tl_http_chunked_read(&a, data + strict, size - (size_t)strict);
        ssize_t rb = tl_http_chunked_read(&b, data + strict, size - (size_t)strict);
        if (ra >= 0 && (rb != ra || b.done != a.done || b.total != a.total))
            FAIL("chunked: strict %zd (done %d), lenient %zd (done %d)", ra, a.done, rb, b.done);
    }
    return 0;
}
