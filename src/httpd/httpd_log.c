/* httpd_log.c - the access log: one line per answer, to a file or to stdout (tlsloop/httpd.h):
 * the combined format and the TLS facts (docs/http.md, "Access log"). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd/httpd_int.h"

#define LINE_MAX_BYTES 4000
#define FIELD_MAX 1000

halog *tli_halog_open(const char *path, char *err, size_t errlen)
{
    halog *a = calloc(1, sizeof *a);
    if (!a) {
        tli_fmt(err, errlen, "out of memory");
        return NULL;
    }
    if (!strcmp(path, "-") || !strcmp(path, "stdout")) {
        a->fd = STDOUT_FILENO;
        return a;
    }
    if (!(a->path = strdup(path)) ||
        (a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) < 0) {
        tli_fmt(err, errlen, "access-log %s: cannot open: %s", path,
                a->path ? strerror(errno) : "out of memory");
        free(a->path);
        free(a);
        return NULL;
    }
    a->own_fd = true;
    return a;
}

int tli_halog_reopen(halog *a, char *err, size_t errlen)
{
    if (!a || !a->path)
        return 0;
    int fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0 || dup3(fd, a->fd, O_CLOEXEC) < 0) {
        tli_fmt(err, errlen, "access log %s: cannot reopen: %s", a->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

void tli_halog_free(halog *a)
{
    if (!a)
        return;
    if (a->own_fd)
        close(a->fd);
    free(a->path);
    free(a);
}

typedef struct out {
    char buf[LINE_MAX_BYTES + 8];
    size_t n;
} out;

static void put(out *o, const char *s, size_t len)
{
    if (len > LINE_MAX_BYTES - o->n)
        len = LINE_MAX_BYTES - o->n;
    memcpy(o->buf + o->n, s, len);
    o->n += len;
}

static void putf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->n, LINE_MAX_BYTES + 1 - o->n, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->n += (size_t)n > LINE_MAX_BYTES - o->n ? LINE_MAX_BYTES - o->n : (size_t)n;
}

/* A client's text in quotes, escaped, at most FIELD_MAX bytes of it: bytes outside printable
 * ASCII, '"' and '\' become \xNN, so a client can forge neither a line nor a field. */
static void quoted(out *o, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    put(o, "\"", 1);
    if (!s) {
        put(o, "-", 1);
    } else {
        if (len > FIELD_MAX)
            len = FIELD_MAX;
        for (size_t i = 0; i < len && o->n < LINE_MAX_BYTES - 4; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
                char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
                put(o, esc, 4);
            } else {
                o->buf[o->n++] = (char)c;
            }
        }
    }
    put(o, "\"", 1);
}

void tli_halog_write(halog *a, const hlogline *l)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    out o;
    o.n = 0;
    char host[INET6_ADDRSTRLEN] = "-";
    if (l->peer && l->peer->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)l->peer)->sin_addr, host, sizeof host);
    else if (l->peer && l->peer->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)l->peer)->sin6_addr, host, sizeof host);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    putf(&o, "%s - - [%02d/%s/%04d:%02d:%02d:%02d +0000] ", host, tm.tm_mday, months[tm.tm_mon],
         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    quoted(&o, l->request, l->request_len);
    putf(&o, " %d %llu ", l->status, (unsigned long long)l->bytes);
    quoted(&o, l->referer, l->referer_len);
    put(&o, " ", 1);
    quoted(&o, l->agent, l->agent_len);
    putf(&o, " %s %s %s %.3f", l->tls_version ? l->tls_version : "-", l->cipher ? l->cipher : "-",
         l->tls_version ? (l->resumed ? "resumed" : "new") : "-", l->seconds);
    o.buf[o.n++] = '\n';
    /* One write on O_APPEND, below PIPE_BUF: lines of several workers never mix; a short one
     * (disk full) loses the line, never interleaves it. */
    ssize_t rc = write(a->fd, o.buf, o.n);
    (void)rc;
}
