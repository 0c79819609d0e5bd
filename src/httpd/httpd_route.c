/* httpd_route.c - deciding the answer to a request, whichever protocol carried it: the metrics
 * page, the HTTPS redirect, the pages added with tl_httpd_add_page, and files below the root
 * (conditional and range requests); and HTTP/1.1's entry to it (tli_httpd_respond).
 */
#include <stdlib.h>
#include <string.h>

#include "httpd/httpd_int.h"

#define MAX_PATH_BYTES 8192

static void serve_page(hworker *w, tl_conn *c, const hpage *pg, const char *path, reply *r)
{
    tl_httpd_page page = {.path = path, .conn = c, .status = 200,
                          .content_type = "text/html; charset=utf-8"};
    pg->fn(w->h, &page, pg->data);
    r->status = page.status;
    r->type = page.content_type;
    r->page = page.body;   /* the reply owns it now */
    r->body = tl_buf_rptr(&r->page);
    r->body_len = r->length = tl_buf_len(&r->page);
    if (!page.cacheable)
        tli_httpd_add_field(r, "Cache-Control", "no-store");
}

static void metrics_page(tl_httpd *h, tl_httpd_page *page, void *data)
{
    (void)data;
    page->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (tl_httpd_metrics_text(h, &page->body) != 0) {
        tl_buf_free(&page->body);
        page->status = 500;
    }
}

/* Does If-Range let the range apply? Only an exact (strong) entity tag or the exact date. */
static bool if_range_holds(const tl_http_header *ir, const hfile *f)
{
    if (!ir)
        return true;
    if (ir->value_len && ir->value[0] == '"')
        return ir->value_len == strlen(f->etag) && memcmp(ir->value, f->etag, ir->value_len) == 0;
    time_t t;
    return tl_http_parse_date(ir->value, ir->value_len, &t) == 0 && t == f->mtime.tv_sec;
}

static void serve_file(hworker *w, const reqview *rv, const char *path, size_t plen, reply *r)
{
    hfile f;
    int st = tli_httpd_file_open(w, path, plen, &f);
    if (st == 301) {
        /* The decoded path, escaped again for the header (a space, a byte above 0x7e). */
        static const char hex[] = "0123456789ABCDEF";
        char loc[sizeof r->extra - 16];
        size_t n = 0;
        for (size_t i = 0; i < plen && n + 4 < sizeof loc; i++) {
            unsigned char c = (unsigned char)path[i];
            if (c > 0x20 && c < 0x7f && c != '%' && c != '"' && c != '?' && c != '#') {
                loc[n++] = (char)c;
            } else {
                loc[n++] = '%';
                loc[n++] = hex[c >> 4];
                loc[n++] = hex[c & 15];
            }
        }
        r->status = 301;
        tli_httpd_add_header(r, "Location: %.*s/\r\n", (int)n, loc);
        tli_httpd_simple_body(r);
        return;
    }
    if (st) {
        tli_httpd_error_answer(r, st);
        return;
    }
    r->status = 200;
    r->type = f.type;
    tli_httpd_add_field(r, "Last-Modified", f.last_modified);
    tli_httpd_add_field(r, "ETag", f.etag);

    const tl_http_header *inm = req_field(rv, "if-none-match");
    const tl_http_header *ims = req_field(rv, "if-modified-since");
    time_t since;
    if (inm ? tl_http_etag_match(inm->value, inm->value_len, f.etag, strlen(f.etag))
            : ims && tl_http_parse_date(ims->value, ims->value_len, &since) == 0 &&
                  f.mtime.tv_sec <= since) {
        tli_httpd_file_close(&f);
        r->status = 304;
        r->type = NULL;
        r->no_length = true;
        return;
    }

    tli_httpd_add_field(r, "Accept-Ranges", "bytes");
    uint64_t first = 0, last = f.size ? f.size - 1 : 0;
    const tl_http_header *range = rv->head ? NULL : req_field(rv, "range");
    if (range && if_range_holds(req_field(rv, "if-range"), &f)) {
        int k = tl_http_parse_range(range->value, range->value_len, f.size, &first, &last);
        if (k < 0) {
            tli_httpd_file_close(&f);
            tli_httpd_reply_init(r, 416);   /* none of the file's fields */
            tli_httpd_add_header(r, "Content-Range: bytes */%llu\r\n",
                                 (unsigned long long)f.size);
            tli_httpd_simple_body(r);
            return;
        }
        if (k == 1) {
            r->status = 206;
            tli_httpd_add_header(r, "Content-Range: bytes %llu-%llu/%llu\r\n",
                                 (unsigned long long)first, (unsigned long long)last,
                                 (unsigned long long)f.size);
        } else {
            first = 0;
            last = f.size ? f.size - 1 : 0;
        }
    }
    uint64_t len = f.size ? last - first + 1 : 0;
    r->length = len;
    if (rv->head || len == 0) {
        tli_httpd_file_close(&f);   /* the head alone */
    } else if (f.data) {
        r->body = f.data + first;
        r->body_len = (size_t)len;
        r->held = f.entry;   /* the reply holds the cache entry now */
        f.entry = NULL;
        tli_httpd_file_close(&f);
    } else {
        r->fd = f.fd;        /* the writer reads it: whole, or streamed */
        r->off = first;
    }
}

/* Is a segment of this normalised path a dotfile or dot-directory not allowed (.git, .env)? They
 * hold what a site's files never mean to publish: a repository, secrets, editor state. */
static bool dot_refused(const tl_httpd *h, const char *path, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (path[i] != '/' || i + 1 >= len || path[i + 1] != '.')
            continue;
        const char *seg = path + i + 1;
        const char *end = memchr(seg, '/', len - i - 1);
        size_t n = end ? (size_t)(end - seg) : len - i - 1;
        if (n == 11 && !memcmp(seg, ".well-known", 11))
            continue;   /* RFC 8615: meant to be published */
        bool allowed = false;
        for (const char *a = h->dot_allow; a && *a && !allowed;) {
            size_t an = strcspn(a, ",");
            allowed = an == n && !memcmp(a, seg, n);
            a += an + (a[an] == ',');
        }
        if (!allowed)
            return true;
    }
    return false;
}

/* The prefix page (tl_httpd_add_prefix_page) a path falls under, or NULL. */
static const hpage *prefix_page(const tl_httpd *h, const char *path)
{
    for (size_t i = 0; i < h->npages; i++)
        if (h->pages[i].prefix && !strncmp(path, h->pages[i].path, strlen(h->pages[i].path)))
            return &h->pages[i];
    return NULL;
}

void tli_httpd_route(hworker *w, tl_conn *c, const reqview *rv, const char *host,
                     size_t hl, reply *r)
{
    tl_httpd *h = w->h;
    const tl_http_request *req = rv->req;
    bool get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    char path[MAX_PATH_BYTES];
    ssize_t plen = tl_http_normalize_path(req->target, req->target_len, path, sizeof path);
    if (plen < 0) {
        /* Too long for us, or not a path at all: either way not something to guess about. */
        r->rejected = true;
        tli_httpd_error_answer(r, req->target_len + 3 > sizeof path ? 414 : 400);
        return;
    }
    if (h->metrics_listener >= 0 && tl_server_conn_listener(c) == h->metrics_listener) {
        if (strcmp(path, h->metrics_path) != 0)
            tli_httpd_error_answer(r, 404);   /* nothing else lives here */
        else if (!get && !head)
            tli_httpd_error_answer(r, 405);
        else
            serve_page(w, c, &(hpage){.path = h->metrics_path, .fn = metrics_page}, path, r);
        return;
    }
    const hpage *pre = prefix_page(h, path);   /* before the redirect (ACME HTTP-01) */
    if (pre) {
        if (!get && !head)
            tli_httpd_error_answer(r, 405);
        else
            serve_page(w, c, pre, path, r);
        return;
    }
    if (h->redirect_https && !tl_conn_is_tls(c) && h->https_port) {
        if (!host || !hl) {
            r->rejected = true;
            tli_httpd_error_answer(r, 400);
            return;
        }
        /* Host without its port: "[::1]:8080" -> "[::1]", "a:8080" -> "a". */
        const char *colon = memrchr(host, ':', hl);
        if (colon && (host[0] != '[' || colon > (const char *)memchr(host, ']', hl)))
            hl = (size_t)(colon - host);
        char port[8] = "";
        if (h->https_port != 443)
            snprintf(port, sizeof port, ":%u", h->https_port);
        r->status = 308;
        tli_httpd_add_header(r, "Location: https://%.*s%s%.*s\r\n", (int)(hl > 255 ? 255 : hl),
                             host, port, (int)(req->target_len > 700 ? 700 : req->target_len),
                             req->target);
        tli_httpd_simple_body(r);
        return;
    }
    for (size_t i = 0; i < h->npages; i++)
        if (!strcmp(h->pages[i].path, path)) {
            if (!get && !head)
                tli_httpd_error_answer(r, 405);
            else
                serve_page(w, c, &h->pages[i], path, r);
            return;
        }
    if (!get && !head) {
        tli_httpd_error_answer(r, 405);
        return;
    }
    if (h->root_fd < 0 || dot_refused(h, path, (size_t)plen)) {
        tli_httpd_error_answer(r, 404);
        return;
    }
    serve_file(w, rv, path, (size_t)plen, r);
}

void tli_httpd_respond(hconn *hc, const tl_http_request *req, const tl_http_message *msg)
{
    hc->keep_alive = msg->keep_alive;
    hc->first = false;
    /* Its last request, read whole (a body has been read before this): once the answer and
     * close_notify are out, nothing is left to wait for. */
    if (!msg->keep_alive)
        tl_conn_set_linger(hc->c, false);
    hbump(&hc->w->st.proto_requests[HPROTO_H1], 1);
    /* The request line for the log: from the method to the version. */
    reqview rv = {.req = req, .line = req->method, .minor = req->minor_version,
                  .head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0,
                  .line_len = (size_t)(req->target + req->target_len - req->method) + 9};
    reply r;
    tli_httpd_reply_init(&r, 200);
    tli_httpd_route(hc->w, hc->c, &rv, msg->host, msg->host_len, &r);
    tli_httpd_h1_send(hc, &rv, &r);
}
