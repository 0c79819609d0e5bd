/* httpd_route.c - answering a request: the metrics page, the HTTPS redirect, the pages added
 * with tl_httpd_add_page, and files below the root (conditional and range requests).
 */
#include <stdlib.h>
#include <string.h>

#include "httpd/httpd_int.h"

#define MAX_PATH_BYTES 8192

static void serve_page(hconn *hc, const reqview *rv, const hpage *pg, const char *path)
{
    tl_httpd_page page = {.path = path, .conn = hc->c, .status = 200,
                          .content_type = "text/html; charset=utf-8"};
    pg->fn(of_conn(hc), &page, pg->data);
    reply r = {.status = page.status, .type = page.content_type,
               .body = tl_buf_rptr(&page.body), .body_len = tl_buf_len(&page.body),
               .length = tl_buf_len(&page.body)};
    if (!page.cacheable)
        tli_httpd_add_field(&r, "Cache-Control", "no-store");
    int rc = tli_httpd_send_reply(hc, rv, &r, false);
    tl_buf_free(&page.body);
    tli_httpd_sent(hc, rc, r.close);
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

/* /health and /ready on the metrics listener, for balancers (tl_server_health): 200 "ok" or
 * "ready", else 503 with the reason ("draining" from the start of a drain, before the listeners
 * close; /ready also "at max-conns"). */
static void health_page(tl_httpd *h, tl_httpd_page *page, void *data)
{
    bool ready = data != NULL;
    const char *why = h->srv ? tl_server_health(h->srv, ready) : "starting";
    page->content_type = "text/plain; charset=utf-8";
    page->status = why ? 503 : 200;
    const char *text = why ? why : ready ? "ready" : "ok";
    tl_buf_append(&page->body, text, strlen(text));
    tl_buf_append(&page->body, "\n", 1);
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

static void serve_file(hconn *hc, const reqview *rv, const char *path, size_t plen)
{
    hworker *w = hc->w;
    hfile f;
    int st = tli_httpd_file_open(w, path, plen, &f);
    if (st == 301) {
        /* The decoded path, escaped again for the header (a space, a byte above 0x7e). */
        static const char hex[] = "0123456789ABCDEF";
        reply r = {.status = 301};
        char loc[sizeof r.extra - 16];
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
        tli_httpd_add_header(&r, "Location: %.*s/\r\n", (int)n, loc);
        tli_httpd_simple_reply(hc, rv, &r);
        return;
    }
    if (st) {
        tli_httpd_error_reply(hc, rv, st, false);
        return;
    }
    reply r = {.status = 200, .type = f.type};
    tli_httpd_add_field(&r, "Last-Modified", f.last_modified);
    tli_httpd_add_field(&r, "ETag", f.etag);

    const tl_http_header *inm = req_field(rv, "if-none-match");
    const tl_http_header *ims = req_field(rv, "if-modified-since");
    time_t since;
    if (inm ? tl_http_etag_match(inm->value, inm->value_len, f.etag, strlen(f.etag))
            : ims && tl_http_parse_date(ims->value, ims->value_len, &since) == 0 &&
                  f.mtime.tv_sec <= since) {
        tli_httpd_file_close(&f);
        r.status = 304;
        r.type = NULL;
        r.no_length = true;
        tli_httpd_sent(hc, tli_httpd_send_reply(hc, rv, &r, false), r.close);
        return;
    }

    tli_httpd_add_field(&r, "Accept-Ranges", "bytes");
    uint64_t first = 0, last = f.size ? f.size - 1 : 0;
    const tl_http_header *range = rv->head ? NULL : req_field(rv, "range");
    if (range && if_range_holds(req_field(rv, "if-range"), &f)) {
        int k = tl_http_parse_range(range->value, range->value_len, f.size, &first, &last);
        if (k < 0) {
            tli_httpd_file_close(&f);
            reply bad = {.status = 416};
            tli_httpd_add_header(&bad, "Content-Range: bytes */%llu\r\n",
                                 (unsigned long long)f.size);
            tli_httpd_simple_reply(hc, rv, &bad);
            return;
        }
        if (k == 1) {
            r.status = 206;
            tli_httpd_add_header(&r, "Content-Range: bytes %llu-%llu/%llu\r\n",
                                 (unsigned long long)first, (unsigned long long)last,
                                 (unsigned long long)f.size);
        } else {
            first = 0;
            last = f.size ? f.size - 1 : 0;
        }
    }
    uint64_t len = f.size ? last - first + 1 : 0;
    r.length = len;
    bool streams = false;
    if (rv->head || len == 0) {
        /* the head alone */
    } else if (f.data) {
        r.body = f.data + first;
        r.body_len = (size_t)len;
    } else if (len <= HTTPD_CHUNK) {
        if (tli_httpd_read_at(f.fd, w->scratch, len, first) != 0) {
            tli_httpd_file_close(&f);
            tli_httpd_error_reply(hc, rv, 500, false);
            return;
        }
        r.body = w->scratch;
        r.body_len = (size_t)len;
    } else {
        if (!(hc->stream = calloc(1, sizeof *hc->stream))) {
            tli_httpd_file_close(&f);
            tli_httpd_error_reply(hc, rv, 503, false);
            return;
        }
        *hc->stream = (hstream){.fd = f.fd, .off = first, .end = first + len};
        f.fd = -1;   /* the stream owns it now */
        streams = true;
    }
    int rc = tli_httpd_send_reply(hc, rv, &r, streams);
    if (!streams || rc < 0) {
        tli_httpd_file_close(&f);
        tli_httpd_end_stream(hc);
        tli_httpd_sent(hc, rc, r.close);
        return;
    }
    hc->blocked = true;
    tl_conn_pause_read(hc->c);
    tl_timer_stop(tl_conn_loop(hc->c), &hc->timer);
    if (rc == 0)
        tli_httpd_pump(hc);   /* else on_drain starts it */
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

void tli_httpd_respond(hconn *hc, const tl_http_request *req, const tl_http_message *msg)
{
    tl_httpd *h = of_conn(hc);
    hc->keep_alive = msg->keep_alive;
    hc->first = false;
    /* Its last request, read whole (a body has been read before this): once the answer and
     * close_notify are out, nothing is left to wait for. */
    if (!msg->keep_alive)
        tl_conn_set_linger(hc->c, false);
    bool get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    /* The request line for the log: from the method to the version. */
    reqview rv = {.req = req, .line = req->method, .head = head, .minor = req->minor_version,
                  .line_len = (size_t)(req->target + req->target_len - req->method) + 9};
    char path[MAX_PATH_BYTES];
    ssize_t plen = tl_http_normalize_path(req->target, req->target_len, path, sizeof path);
    if (plen < 0) {
        /* Too long for us, or not a path at all: either way not something to guess about. */
        tli_httpd_reject(hc, &rv, req->target_len + 3 > sizeof path ? 414 : 400);
        return;
    }
    if (h->metrics_listener >= 0 && tl_server_conn_listener(hc->c) == h->metrics_listener) {
        bool health = !strcmp(path, "/health"), ready = !strcmp(path, "/ready");
        if (strcmp(path, h->metrics_path) != 0 && !health && !ready)
            tli_httpd_error_reply(hc, &rv, 404, false);   /* nothing else lives here */
        else if (!get && !head)
            tli_httpd_error_reply(hc, &rv, 405, false);
        else if (health || ready)
            serve_page(hc, &rv, &(hpage){.path = path, .fn = health_page,
                                         .data = ready ? (void *)1 : NULL}, path);
        else
            serve_page(hc, &rv, &(hpage){.path = h->metrics_path, .fn = metrics_page}, path);
        return;
    }
    if (h->redirect_https && !tl_conn_is_tls(hc->c) && h->https_port) {
        reply r = {.status = 308};
        const char *host = msg->host;
        size_t hl = msg->host_len;
        if (!host || !hl) {
            tli_httpd_reject(hc, &rv, 400);
            return;
        }
        /* Host without its port: "[::1]:8080" -> "[::1]", "a:8080" -> "a". */
        const char *colon = memrchr(host, ':', hl);
        if (colon && (host[0] != '[' || colon > (const char *)memchr(host, ']', hl)))
            hl = (size_t)(colon - host);
        char port[8] = "";
        if (h->https_port != 443)
            snprintf(port, sizeof port, ":%u", h->https_port);
        tli_httpd_add_header(&r, "Location: https://%.*s%s%.*s\r\n", (int)(hl > 255 ? 255 : hl),
                             host, port, (int)(req->target_len > 700 ? 700 : req->target_len),
                             req->target);
        tli_httpd_simple_reply(hc, &rv, &r);
        return;
    }
    for (size_t i = 0; i < h->npages; i++)
        if (!strcmp(h->pages[i].path, path)) {
            if (!get && !head)
                tli_httpd_error_reply(hc, &rv, 405, false);
            else
                serve_page(hc, &rv, &h->pages[i], path);
            return;
        }
    if (!get && !head) {
        tli_httpd_error_reply(hc, &rv, 405, false);
        return;
    }
    if (h->root_fd < 0 || dot_refused(h, path, (size_t)plen)) {
        tli_httpd_error_reply(hc, &rv, 404, false);
        return;
    }
    serve_file(hc, &rv, path, (size_t)plen);
}
