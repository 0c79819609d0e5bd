/* http.c - the request parser and the framing checks (tlsloop/http.h): one pass with a table per
 * character class, nothing copied; a partial head is TL_HTTP_INCOMPLETE only while it can still
 * become a valid one, garbage is refused when seen (docs/http.md, "Requests"). */
#include <string.h>
#include <strings.h>

#include <tlsloop/http.h>

/* Character classes, one bit each. */
enum { C_TOKEN = 1, C_TARGET = 2, C_VALUE = 4, C_HOST = 8 };

static unsigned char classes[256];

static void init_classes(void)
{
    for (int c = 0; c < 256; c++) {
        unsigned char k = 0;
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (alnum || (c && strchr("!#$%&'*+-.^_`|~", c)))
            k |= C_TOKEN;
        if (c > 0x20 && c < 0x7f)
            k |= C_TARGET;
        if (c == '\t' || c == ' ' || (c > 0x20 && c != 0x7f))
            k |= C_VALUE;   /* visible ASCII, obs-text (0x80-0xff), space and tab */
        if (alnum || (c && strchr("-._~!$&'()*+,;=:[]%", c)))
            k |= C_HOST;
        classes[c] = k;
    }
}

static inline bool is(unsigned char c, unsigned cls)
{
    return classes[c] & cls;
}

/* The tables are built once, before any thread can parse (a constructor keeps every call free of
 * a check). */
__attribute__((constructor)) static void http_init(void)
{
    init_classes();
}

static int fail(tl_http_request *req, int status, const char *why)
{
    req->error_status = status;
    req->error = why;
    return TL_HTTP_ERROR;
}

/* At a line end: CRLF, or a lone LF when lone_lf. Returns its length, 0 when it is not complete
 * yet, -1 for a bare CR or another byte, LONE_LF for a lone LF that is refused. */
#define LONE_LF (-3)
static int line_end(const unsigned char *p, const unsigned char *end, bool lone_lf)
{
    if (*p == '\n')
        return lone_lf ? 1 : LONE_LF;
    if (*p != '\r')
        return -1;
    if (p + 1 == end)
        return 0;
    return p[1] == '\n' ? 2 : -1;
}

static const char lone_lf_text[] = "lone LF (lines must end with CRLF)";

/* "HTTP/1.1" and its line end, which may be partial. */
static int parse_version(const unsigned char **pp, const unsigned char *end, tl_http_request *req,
                         bool lone_lf)
{
    static const char pattern[] = "HTTP/d.d";
    const unsigned char *p = *pp;
    for (size_t i = 0; i < 8; i++) {
        if (p + i == end)
            return TL_HTTP_INCOMPLETE;
        unsigned char c = p[i];
        bool ok = pattern[i] == 'd' ? (c >= '0' && c <= '9') : c == (unsigned char)pattern[i];
        if (!ok)
            return fail(req, 400, "malformed HTTP version");
    }
    if (p + 8 == end)
        return TL_HTTP_INCOMPLETE;
    int n = line_end(p + 8, end, lone_lf);
    if (n == 0)
        return TL_HTTP_INCOMPLETE;
    if (n < 0)
        return fail(req, 400, n == LONE_LF ? lone_lf_text : "malformed request line");
    if (p[5] != '1')
        return fail(req, 505, "HTTP version not supported");
    req->minor_version = p[7] == '0' ? 0 : 1;   /* 1.2-1.9 are read as 1.1 (RFC 9110 2.5) */
    *pp = p + 8 + n;
    return 0;
}

/* The header fields after a start line: field-name ":" OWS field-value OWS, each on its line,
 * then an empty line. Returns the head's length from buf, TL_HTTP_INCOMPLETE, or TL_HTTP_ERROR
 * with *status and *why set. */
static int parse_fields(const unsigned char *p, const unsigned char *end, const unsigned char *buf,
                        tl_http_header *headers, size_t max, size_t *num, int *status,
                        const char **why, bool lone_lf)
{
    const unsigned char *start;
#define FIELD_FAIL(st, text) return (*status = (st), *why = (text), TL_HTTP_ERROR)
    for (;;) {
        if (p == end)
            return TL_HTTP_INCOMPLETE;
        if (*p == '\r' || *p == '\n') {
            int n = line_end(p, end, lone_lf);
            if (n == 0)
                return TL_HTTP_INCOMPLETE;
            if (n < 0)
                FIELD_FAIL(400, n == LONE_LF ? lone_lf_text : "bare CR");
            p += n;
            return (int)(p - buf);
        }
        if (*p == ' ' || *p == '\t')
            FIELD_FAIL(400, "obsolete line folding");
        for (start = p; p < end && is(*p, C_TOKEN); p++)
            ;
        if (p == end)
            return TL_HTTP_INCOMPLETE;
        if (p == start || *p != ':')
            FIELD_FAIL(400, p == start                  ? "empty or invalid field name"
                            : *p == ' ' || *p == '\t' ? "whitespace before a colon"
                                                      : "invalid field name");
        if (*num == max)
            FIELD_FAIL(431, "too many header fields");
        tl_http_header *h = &headers[*num];
        h->name = (const char *)start;
        h->name_len = (size_t)(p - start);
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        for (start = p; p < end && is(*p, C_VALUE); p++)
            ;
        if (p == end)
            return TL_HTTP_INCOMPLETE;
        int n = line_end(p, end, lone_lf);
        if (n == 0)
            return TL_HTTP_INCOMPLETE;
        if (n < 0)
            FIELD_FAIL(400, n == LONE_LF  ? lone_lf_text
                            : *p == '\r' ? "bare CR"
                                         : "control character in a field value");
        const unsigned char *vend = p;
        while (vend > start && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        h->value = (const char *)start;
        h->value_len = (size_t)(vend - start);
        (*num)++;
        p += n;
    }
#undef FIELD_FAIL
}

int tl_http_parse_request(const char *buf, size_t len, tl_http_request *req)
{
    return tl_http_parse_request_ex(buf, len, req, 0);
}

int tl_http_parse_request_ex(const char *buf, size_t len, tl_http_request *req, unsigned flags)
{
    const unsigned char *p = (const unsigned char *)buf, *end = p + len, *start;
    bool lone_lf = flags & TL_HTTP_LONE_LF;
    req->num_headers = 0;
    req->error_status = 0;
    req->error = NULL;

    /* Empty lines before the request line (a client's CRLF after a body) are skipped. */
    while (p < end && (*p == '\r' || *p == '\n')) {
        int n = line_end(p, end, lone_lf);
        if (n == 0)
            return TL_HTTP_INCOMPLETE;
        if (n < 0)
            return fail(req, 400, n == LONE_LF ? lone_lf_text : "bare CR");
        p += n;
    }

    /* method SP request-target SP HTTP-version */
    for (start = p; p < end && is(*p, C_TOKEN); p++)
        ;
    if (p == end)
        return TL_HTTP_INCOMPLETE;
    if (p == start || *p != ' ')
        return fail(req, 400, "malformed request line");
    req->method = (const char *)start;
    req->method_len = (size_t)(p - start);
    p++;
    for (start = p; p < end && is(*p, C_TARGET); p++)
        ;
    if (p == end)
        return TL_HTTP_INCOMPLETE;
    if (p == start || *p != ' ')
        return fail(req, 400, "malformed request target");
    req->target = (const char *)start;
    req->target_len = (size_t)(p - start);
    p++;
    int rc = parse_version(&p, end, req, lone_lf);
    if (rc != 0)
        return rc;

    return parse_fields(p, end, (const unsigned char *)buf, req->headers, req->max_headers,
                        &req->num_headers, &req->error_status, &req->error, lone_lf);
}

int tl_http_parse_response(const char *buf, size_t len, tl_http_response *resp)
{
    const unsigned char *p = (const unsigned char *)buf, *end = p + len;
    resp->num_headers = 0;
    resp->error = NULL;
    int status = 0;
    /* "HTTP/1.x" SP 3DIGIT SP reason-phrase (the SP before an empty reason may be missing). */
    static const char pattern[] = "HTTP/1.d ddd";
    for (size_t i = 0; i < sizeof pattern - 1; i++) {
        if (p + i == end)
            return TL_HTTP_INCOMPLETE;
        unsigned char c = p[i];
        bool ok = pattern[i] == 'd' ? (c >= '0' && c <= '9') : c == (unsigned char)pattern[i];
        if (!ok)
            return resp->error = "malformed status line", TL_HTTP_ERROR;
    }
    resp->minor_version = p[7] == '0' ? 0 : 1;
    resp->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (resp->status < 100)
        return resp->error = "malformed status code", TL_HTTP_ERROR;
    p += 12;
    if (p == end)
        return TL_HTTP_INCOMPLETE;
    const unsigned char *reason = p;
    if (*p == ' ') {
        reason = ++p;
        while (p < end && is(*p, C_VALUE))
            p++;
        if (p == end)
            return TL_HTTP_INCOMPLETE;
    }
    int n = line_end(p, end, true);   /* clients stay lenient (tlsloop/http.h) */
    if (n == 0)
        return TL_HTTP_INCOMPLETE;
    if (n < 0)
        return resp->error = "malformed status line", TL_HTTP_ERROR;
    resp->reason = (const char *)reason;
    resp->reason_len = (size_t)(p - reason);
    p += n;
    return parse_fields(p, end, (const unsigned char *)buf, resp->headers, resp->max_headers,
                        &resp->num_headers, &status, &resp->error, true);
}

/* ---- the incremental scan -------------------------------------------------------------- */

/* The states of tl_http_scan_head: the parser's grammar one byte at a time, with its answers. */
enum {
    SC_START,      /* before the request line: empty lines, or the method's first byte */
    SC_START_LF,   /* CR of an empty line seen */
    SC_METHOD,
    SC_TARGET0,    /* the target's first byte */
    SC_TARGET,
    SC_VERSION,    /* aux: bytes of "HTTP/d.d" seen (low byte), the major digit (next byte) */
    SC_LINE_END,   /* after the version: CR or LF */
    SC_LINE_LF,
    SC_FIELD,      /* a field line's first byte, or the empty line */
    SC_END_LF,     /* CR of the empty line seen */
    SC_NAME,
    SC_VALUE,
    SC_VALUE_LF,
    SC_DONE,       /* at: the head's length */
    SC_ERROR,
};

static int scan_fail(tl_http_scan *s, int status, const char *why)
{
    s->state = SC_ERROR;
    s->error_status = status;
    s->error = why;
    return TL_HTTP_ERROR;
}

/* The request line ended: the version's major digit decides (as in parse_version). */
static int scan_line_done(tl_http_scan *s)
{
    if ((s->aux >> 8) != '1')
        return scan_fail(s, 505, "HTTP version not supported");
    s->state = SC_FIELD;
    return 0;
}

int tl_http_scan_head(tl_http_scan *s, const char *buf, size_t len)
{
    static const char pattern[] = "HTTP/d.d";
    bool lone_lf = s->flags & TL_HTTP_LONE_LF;
    if (s->state == SC_DONE)
        return (int)s->at;
    if (s->state == SC_ERROR)
        return TL_HTTP_ERROR;
    for (; s->at < len; s->at++) {
        unsigned char c = (unsigned char)buf[s->at];
        switch (s->state) {
        case SC_START:
            if (c == '\r')
                s->state = SC_START_LF;
            else if (c == '\n' && !lone_lf)
                return scan_fail(s, 400, lone_lf_text);
            else if (c != '\n' && !is(c, C_TOKEN))
                return scan_fail(s, 400, "malformed request line");
            else if (c != '\n')
                s->state = SC_METHOD;
            break;
        case SC_START_LF:
            if (c != '\n')
                return scan_fail(s, 400, "bare CR");
            s->state = SC_START;
            break;
        case SC_METHOD:
            while (is(c, C_TOKEN)) {   /* runs of ordinary bytes in a tight loop */
                if (++s->at == len)
                    return TL_HTTP_INCOMPLETE;
                c = (unsigned char)buf[s->at];
            }
            if (c == ' ')
                s->state = SC_TARGET0;
            else if (!is(c, C_TOKEN))
                return scan_fail(s, 400, "malformed request line");
            break;
        case SC_TARGET0:
        case SC_TARGET:
            while (s->state == SC_TARGET && is(c, C_TARGET)) {
                if (++s->at == len)
                    return TL_HTTP_INCOMPLETE;
                c = (unsigned char)buf[s->at];
            }
            if (c == ' ' && s->state == SC_TARGET) {
                s->state = SC_VERSION;
                s->aux = 0;
            } else if (!is(c, C_TARGET)) {
                return scan_fail(s, 400, "malformed request target");
            } else {
                s->state = SC_TARGET;
            }
            break;
        case SC_VERSION: {
            unsigned i = s->aux & 0xff;
            bool ok = pattern[i] == 'd' ? (c >= '0' && c <= '9') : c == (unsigned char)pattern[i];
            if (!ok)
                return scan_fail(s, 400, "malformed HTTP version");
            if (i == 5)
                s->aux |= (unsigned)c << 8;
            s->aux++;
            if (i == 7)
                s->state = SC_LINE_END;
            break;
        }
        case SC_LINE_END:
            if (c == '\r')
                s->state = SC_LINE_LF;
            else if (c == '\n' && lone_lf) {
                if (scan_line_done(s) < 0)
                    return TL_HTTP_ERROR;
            } else
                return scan_fail(s, 400, c == '\n' ? lone_lf_text : "malformed request line");
            break;
        case SC_LINE_LF:
            if (c != '\n')
                return scan_fail(s, 400, "malformed request line");
            if (scan_line_done(s) < 0)
                return TL_HTTP_ERROR;
            break;
        case SC_FIELD:
            if (c == '\r') {
                s->state = SC_END_LF;
            } else if (c == '\n') {
                if (!lone_lf)
                    return scan_fail(s, 400, lone_lf_text);
                s->state = SC_DONE;
                return (int)++s->at;
            } else if (c == ' ' || c == '\t') {
                return scan_fail(s, 400, "obsolete line folding");
            } else if (!is(c, C_TOKEN)) {
                return scan_fail(s, 400, "empty or invalid field name");
            } else {
                s->state = SC_NAME;
            }
            break;
        case SC_END_LF:
            if (c != '\n')
                return scan_fail(s, 400, "bare CR");
            s->state = SC_DONE;
            return (int)++s->at;
        case SC_NAME:
            while (is(c, C_TOKEN)) {
                if (++s->at == len)
                    return TL_HTTP_INCOMPLETE;
                c = (unsigned char)buf[s->at];
            }
            if (c == ':')
                s->state = SC_VALUE;
            else if (!is(c, C_TOKEN))
                return scan_fail(s, 400, c == ' ' || c == '\t' ? "whitespace before a colon"
                                                               : "invalid field name");
            break;
        case SC_VALUE:
            while (is(c, C_VALUE)) {
                if (++s->at == len)
                    return TL_HTTP_INCOMPLETE;
                c = (unsigned char)buf[s->at];
            }
            if (c == '\r')
                s->state = SC_VALUE_LF;
            else if (c == '\n' && lone_lf)
                s->state = SC_FIELD;
            else if (!is(c, C_VALUE))
                return scan_fail(s, 400, c == '\n' ? lone_lf_text
                                                   : "control character in a field value");
            break;
        case SC_VALUE_LF:
            if (c != '\n')
                return scan_fail(s, 400, "bare CR");
            s->state = SC_FIELD;
            break;
        default:
            return scan_fail(s, 400, "scanner state corrupt");
        }
    }
    return TL_HTTP_INCOMPLETE;
}

int tl_http_incomplete_status(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
        i++;
    return memchr(buf + i, '\n', len - i) ? 431 : 414;
}

bool tl_http_head_ended(const char *buf, size_t len, size_t from)
{
    size_t i = from > 3 ? from - 3 : 0;
    for (; i + 1 < len; i++) {
        const char *nl = memchr(buf + i, '\n', len - i - 1);
        if (!nl)
            return false;
        i = (size_t)(nl - buf);
        if (nl[1] == '\n' || (nl[1] == '\r' && i + 2 < len && nl[2] == '\n'))
            return true;
    }
    return false;
}

/* ---- framing ---------------------------------------------------------------------------- */

static bool name_is(const tl_http_header *h, const char *name, size_t len)
{
    return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}
#define NAME_IS(h, lit) name_is((h), lit, sizeof lit - 1)

const tl_http_header *tl_http_find_in(const tl_http_header *h, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (name_is(&h[i], name, len))
            return &h[i];
    return NULL;
}

const tl_http_header *tl_http_find_header(const tl_http_request *req, const char *name)
{
    return tl_http_find_in(req->headers, req->num_headers, name);
}

/* Step through a comma-separated list: the next element, trimmed, or false at the end. Empty
 * elements (", ,") are skipped, as RFC 9110 5.6.1 asks of recipients. */
static bool next_element(const char **pp, const char *end, const char **el, size_t *ellen)
{
    const char *p = *pp;
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p == end)
            return false;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *el = s;
        *ellen = (size_t)(e - s);
        *pp = p;
        return true;
    }
}

bool tl_http_list_has(const char *list, size_t len, const char *token)
{
    size_t tlen = strlen(token), n;
    const char *p = list, *end = list + len, *el;
    while (next_element(&p, end, &el, &n))
        if (n == tlen && strncasecmp(el, token, n) == 0)
            return true;
    return false;
}

static int bad(tl_http_message *out, int status, const char *why)
{
    out->error_status = status;
    out->error = why;
    out->keep_alive = false;
    return status;
}

/* Content-Length: 1*DIGIT, nothing else (no sign, no list, no spaces inside); at most 10^18. */
static int64_t parse_length(const char *v, size_t len)
{
    if (len == 0 || len > 18)
        return -1;
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

int tl_http_check_request(const tl_http_request *req, tl_http_message *out)
{
    *out = (tl_http_message){.content_length = -1};
    const tl_http_header *te = NULL;
    bool conn_close = false, conn_keep = false, have_cl = false;
    for (size_t i = 0; i < req->num_headers; i++) {
        const tl_http_header *h = &req->headers[i];
        if (NAME_IS(h, "content-length")) {
            if (have_cl)
                return bad(out, 400, "repeated Content-Length");
            have_cl = true;
            if ((out->content_length = parse_length(h->value, h->value_len)) < 0)
                return bad(out, 400, "invalid Content-Length");
        } else if (NAME_IS(h, "transfer-encoding")) {
            if (te)
                return bad(out, 400, "repeated Transfer-Encoding");
            te = h;
        } else if (NAME_IS(h, "host")) {
            if (out->host)
                return bad(out, 400, "repeated Host");
            for (size_t k = 0; k < h->value_len; k++)
                if (!is((unsigned char)h->value[k], C_HOST))
                    return bad(out, 400, "invalid Host");
            out->host = h->value;
            out->host_len = h->value_len;
        } else if (NAME_IS(h, "connection")) {
            conn_close |= tl_http_list_has(h->value, h->value_len, "close");
            conn_keep |= tl_http_list_has(h->value, h->value_len, "keep-alive");
        } else if (NAME_IS(h, "expect") && req->minor_version == 1) {
            /* HTTP/1.0 clients cannot expect 100-continue: ignored there (RFC 9110 10.1.1). */
            if (h->value_len != 12 || strncasecmp(h->value, "100-continue", 12) != 0)
                return bad(out, 417, "unsupported Expect");
            out->expect_continue = true;
        }
    }
    if (te) {
        if (req->minor_version == 0)
            return bad(out, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (have_cl)
            return bad(out, 400, "Content-Length with Transfer-Encoding");
        const char *p = te->value, *end = te->value + te->value_len, *el, *last = NULL;
        size_t n, lastlen = 0, count = 0;
        while (next_element(&p, end, &el, &n)) {
            last = el;
            lastlen = n;
            count++;
        }
        if (!last || lastlen != 7 || strncasecmp(last, "chunked", 7) != 0)
            return bad(out, 400, "Transfer-Encoding does not end in chunked");
        if (count > 1)
            return bad(out, 501, "transfer coding not supported");
        out->chunked = true;
    }
    if (req->minor_version == 1 && !out->host)
        return bad(out, 400, "no Host in an HTTP/1.1 request");
    out->keep_alive = req->minor_version == 1 ? !conn_close : conn_keep && !conn_close;
    return 0;
}

int tl_http_response_body(const tl_http_response *resp, bool head_request, tl_http_body *out)
{
    *out = (tl_http_body){.content_length = -1};
    const tl_http_header *te = NULL;
    bool have_cl = false, conn_close = false, conn_keep = false;
    for (size_t i = 0; i < resp->num_headers; i++) {
        const tl_http_header *h = &resp->headers[i];
        if (NAME_IS(h, "content-length")) {
            int64_t n = parse_length(h->value, h->value_len);
            /* Repeated identical values are tolerated from servers (RFC 9110 8.6); others not. */
            if (n < 0 || (have_cl && n != out->content_length))
                return out->error = "invalid or conflicting Content-Length", -1;
            have_cl = true;
            out->content_length = n;
        } else if (NAME_IS(h, "transfer-encoding")) {
            if (te)
                return out->error = "repeated Transfer-Encoding", -1;
            te = h;
        } else if (NAME_IS(h, "connection")) {
            conn_close |= tl_http_list_has(h->value, h->value_len, "close");
            conn_keep |= tl_http_list_has(h->value, h->value_len, "keep-alive");
        }
    }
    out->keep_alive = resp->minor_version == 1 ? !conn_close : conn_keep && !conn_close;
    if (head_request || resp->status < 200 || resp->status == 204 || resp->status == 304) {
        out->none = true;
        return 0;
    }
    if (te) {
        if (have_cl)
            return out->error = "Content-Length with Transfer-Encoding", -1;
        if (te->value_len != 7 || strncasecmp(te->value, "chunked", 7) != 0)
            return out->error = "transfer coding other than chunked", -1;
        out->chunked = true;
        out->content_length = -1;
    } else if (!have_cl) {
        out->until_close = true;
        out->keep_alive = false;
    }
    return 0;
}
