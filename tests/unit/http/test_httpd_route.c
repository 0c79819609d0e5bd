/* test_httpd_route.c - the answer routing decides, whichever protocol carries it
 * (tli_httpd_route, src/httpd/httpd_route.c): files, index, 301, 304, ranges, 416, HEAD,
 * dotfiles, 404, 405, refused targets; and a cached file's contents that stay alive while an
 * answer holds them although the cache dropped the entry (what HTTP/2 streams rely on: under
 * ASan a use after free or a leak fails). No sockets, no server. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tlsloop/httpd.h>
#include <tlsloop/server.h>

#include "httpd/httpd_int.h"
#include "test.h"

static char root[64];

static void put(const char *name, const char *text, size_t n)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n)
        abort();
    close(fd);
}

/* An httpd on the root (not attached to a server) and a worker of our own. */
static tl_httpd *make(hworker *w, const char *cache, const char *cache_max)
{
    strcpy(root, "/tmp/tlsloop-route-XXXXXX");
    if (!mkdtemp(root))
        abort();
    char sub[96];
    snprintf(sub, sizeof sub, "%s/sub", root);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/.git", root);
    mkdir(sub, 0755);
    put("index.html", "hello\n", 6);
    put("sub/index.html", "sub\n", 4);
    put(".git/config", "secret\n", 7);
    static char big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7);
    put("big.bin", big, sizeof big);
    put("a.txt", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 60);
    put("b.txt", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 60);
    tl_server_config *cfg = tl_server_config_new();
    char err[256];
    REQUIRE(cfg && tl_httpd_config_init(cfg) == 0);
    REQUIRE(tl_server_config_set(cfg, "root", root, err, sizeof err) == 0);
    REQUIRE(tl_server_config_set(cfg, "file-cache", cache, err, sizeof err) == 0);
    REQUIRE(tl_server_config_set(cfg, "file-cache-max", cache_max, err, sizeof err) == 0);
    tl_httpd *h = tl_httpd_new(cfg, err, sizeof err);
    tl_server_config_free(cfg);
    REQUIRE(h);
    memset(w, 0, sizeof *w);
    w->h = h;
    w->date_sec = -1;
    w->cache.max_bytes = h->cache_bytes;
    w->cache.max_file = h->cache_max_file;
    return h;
}

static void done(tl_httpd *h, hworker *w)
{
    tli_httpd_cache_free(&w->cache);
    tl_httpd_free(h);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

/* Route one request: method, target and up to two header fields. */
static void route(hworker *w, const char *method, const char *target, const char *name,
                  const char *value, reply *r)
{
    tl_http_header f[2] = {{0}};
    size_t nf = 0;
    if (name) {
        f[0] = (tl_http_header){name, strlen(name), value, strlen(value)};
        nf = 1;
    }
    tl_http_request req = {.method = method, .method_len = strlen(method), .target = target,
                           .target_len = strlen(target), .minor_version = 1, .headers = f,
                           .max_headers = 2, .num_headers = nf};
    reqview rv = {.req = &req, .line = method, .line_len = strlen(method),
                  .head = !strcmp(method, "HEAD"), .minor = 1};
    tli_httpd_reply_init(r, 200);
    tli_httpd_route(w, NULL, &rv, "localhost", 9, r);
}

static bool has(const reply *r, const char *line)
{
    return memmem(r->extra, r->extra_len, line, strlen(line)) != NULL;
}

TEST(files_ranges_and_conditionals)
{
    hworker w;
    tl_httpd *h = make(&w, "16m", "64k");
    reply r;
    route(&w, "GET", "/index.html", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.body && r.body_len == 6 && !memcmp(r.body, "hello\n", 6) && r.held && r.fd < 0);
    CHECK(r.type && !strncmp(r.type, "text/html", 9));
    CHECK(has(&r, "ETag: \"") && has(&r, "Last-Modified: ") && has(&r, "Accept-Ranges: bytes"));
    char etag[64] = "";
    const char *e = memmem(r.extra, r.extra_len, "ETag: ", 6);
    if (e)
        sscanf(e + 6, "%63s", etag);
    tli_httpd_reply_free(&r);

    route(&w, "GET", "/index.html", "if-none-match", etag, &r);
    CHECK_EQ_INT(r.status, 304);
    CHECK(r.no_length && !r.body && r.fd < 0 && !r.held);
    tli_httpd_reply_free(&r);

    route(&w, "GET", "/big.bin", NULL, NULL, &r);   /* above file-cache-max: the file itself */
    CHECK(r.status == 200 && r.fd >= 0 && r.off == 0 && r.length == 200000 && !r.body);
    tli_httpd_reply_free(&r);
    CHECK(r.fd < 0);

    route(&w, "GET", "/big.bin", "range", "bytes=100-199", &r);
    CHECK(r.status == 206 && r.fd >= 0 && r.off == 100 && r.length == 100);
    CHECK(has(&r, "Content-Range: bytes 100-199/200000\r\n"));
    tli_httpd_reply_free(&r);

    route(&w, "GET", "/big.bin", "range", "bytes=300000-", &r);
    CHECK(r.status == 416 && has(&r, "Content-Range: bytes */200000") && !has(&r, "ETag"));
    CHECK(r.body && r.fd < 0);
    tli_httpd_reply_free(&r);

    route(&w, "HEAD", "/big.bin", "range", "bytes=0-9", &r);   /* HEAD: no range, no body */
    CHECK(r.status == 200 && r.length == 200000 && r.fd < 0 && !r.body);
    tli_httpd_reply_free(&r);

    route(&w, "GET", "/sub", NULL, NULL, &r);
    CHECK(r.status == 301 && has(&r, "Location: /sub/\r\n"));
    tli_httpd_reply_free(&r);
    route(&w, "GET", "/sub/", NULL, NULL, &r);
    CHECK(r.status == 200 && r.body_len == 4 && !memcmp(r.body, "sub\n", 4));
    tli_httpd_reply_free(&r);
    tli_httpd_reply_init(&r, 200);
    done(h, &w);
}

TEST(errors_decided_once)
{
    hworker w;
    tl_httpd *h = make(&w, "16m", "64k");
    reply r;
    route(&w, "GET", "/nothing", NULL, NULL, &r);
    CHECK(r.status == 404 && !r.rejected && r.body && r.length == r.body_len);
    CHECK(memmem(r.body, r.body_len, "404 Not Found", 13) != NULL);
    tli_httpd_reply_free(&r);
    route(&w, "GET", "/.git/config", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 404);
    tli_httpd_reply_free(&r);
    route(&w, "DELETE", "/index.html", NULL, NULL, &r);
    CHECK(r.status == 405 && has(&r, "Allow: GET, HEAD\r\n"));
    tli_httpd_reply_free(&r);
    route(&w, "GET", "no-slash", NULL, NULL, &r);
    CHECK(r.status == 400 && r.rejected);
    tli_httpd_reply_free(&r);
    /* A reply moved elsewhere keeps its body (the small one lives inside the reply). */
    route(&w, "GET", "/nothing", NULL, NULL, &r);
    reply *kept = malloc(sizeof *kept);
    REQUIRE(kept);
    tli_httpd_reply_move(kept, &r);
    memset(&r, 0x55, sizeof r);
    CHECK(kept->status == 404 && memmem(kept->body, kept->body_len, "404", 3) != NULL);
    CHECK((const char *)kept->body >= kept->small &&
          (const char *)kept->body < kept->small + sizeof kept->small);
    tli_httpd_reply_free(kept);
    free(kept);
    done(h, &w);
}

static void token_page(tl_httpd *h, tl_httpd_page *page, void *data)
{
    (void)h;
    (void)data;
    if (!strcmp(page->path, "/.well-known/acme-challenge/tok"))
        tl_buf_append(&page->body, "tok.thumb", 9);
    else
        page->status = 404;
}

TEST(prefix_page_answers_below_its_prefix_before_the_redirect)
{
    hworker w;
    tl_httpd *h = make(&w, "16m", "64k");
    h->redirect_https = true;   /* a plain listener would redirect everything else */
    h->https_port = 8443;
    REQUIRE(tl_httpd_add_prefix_page(h, "/.well-known/acme-challenge/", token_page, NULL) == 0);
    reply r;
    route(&w, "GET", "/.well-known/acme-challenge/tok", NULL, NULL, &r);
    CHECK(r.status == 200 && r.body_len == 9 && !memcmp(r.body, "tok.thumb", 9));
    tli_httpd_reply_free(&r);
    route(&w, "GET", "/.well-known/acme-challenge/other", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 404);
    tli_httpd_reply_free(&r);
    route(&w, "GET", "/.well-known/acme-challenge/../acme-challenge/tok", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 200);   /* the normalised path decides */
    tli_httpd_reply_free(&r);
    route(&w, "POST", "/.well-known/acme-challenge/tok", NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 405);
    tli_httpd_reply_free(&r);
    h->redirect_https = false;
    route(&w, "GET", "/index.html", NULL, NULL, &r);   /* files are not below the prefix */
    CHECK(r.status == 200 && r.body_len == 6);
    tli_httpd_reply_free(&r);
    done(h, &w);
}

TEST(cached_contents_live_while_held)
{
    hworker w;
    tl_httpd *h = make(&w, "100", "64k");   /* room for one of the 60-byte files */
    reply ra, rb;
    route(&w, "GET", "/a.txt", NULL, NULL, &ra);
    REQUIRE(ra.status == 200 && ra.held && ra.body_len == 60);
    route(&w, "GET", "/b.txt", NULL, NULL, &rb);   /* drops a.txt's entry from the cache */
    REQUIRE(rb.status == 200 && rb.held && rb.body_len == 60);
    CHECK(w.cache.count == 1);
    char want[60];
    memset(want, 'a', sizeof want);
    CHECK(!memcmp(ra.body, want, 60));   /* still there: held by ra */
    tli_httpd_reply_free(&ra);           /* the last holder frees it */
    reply again;
    route(&w, "GET", "/a.txt", NULL, NULL, &again);   /* read anew, b dropped in turn */
    CHECK(again.held && !memcmp(again.body, want, 60));
    memset(want, 'b', sizeof want);
    CHECK(!memcmp(rb.body, want, 60));
    tli_httpd_reply_free(&rb);
    tli_httpd_reply_free(&again);
    CHECK(w.cache.count == 1);
    done(h, &w);
}

TEST(abuse_names)
{
    CHECK_STR(tl_h2_abuse_name(TL_H2_ABUSE_RESET), "rapid_reset");
    CHECK_STR(tl_h2_abuse_name(TL_H2_ABUSE_PROTOCOL), "protocol");
    CHECK_STR(tl_h2_abuse_name(TL_H2_ABUSE_KINDS), "unknown");
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(files_ranges_and_conditionals);
    RUN(errors_decided_once);
    RUN(prefix_page_answers_below_its_prefix_before_the_redirect);
    RUN(cached_contents_live_while_held);
    RUN(abuse_names);
    TEST_MAIN_END();
}
