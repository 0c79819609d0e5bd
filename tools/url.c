/* url.c - what the client tools (get, bench) share on their command lines: http:// and https://
 * URLs, header options, and the one-line usage error. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tools.h"

int parse_url(const char *s, url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    const char *p;
    if (!strncasecmp(s, "https://", 8)) {
        u->tls = true;
        p = s + 8;
    } else if (!strncasecmp(s, "http://", 7)) {
        p = s + 7;
    } else {
        snprintf(err, errlen, "%.300s: not an http:// or https:// URL", s);
        return -1;
    }
    const char *end = p + strcspn(p, "/?#");
    const char *hs = p, *he, *port = NULL;
    if (*p == '[') {
        he = memchr(p, ']', (size_t)(end - p));
        if (!he) {
            snprintf(err, errlen, "%.300s: an IPv6 address without its ']'", s);
            return -1;
        }
        hs = p + 1;
        if (he + 1 < end) {
            if (he[1] != ':') {
                snprintf(err, errlen, "%.300s: junk after the IPv6 address", s);
                return -1;
            }
            port = he + 2;
        }
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (he)
            port = he + 1;
        else
            he = end;
    }
    if (memchr(p, '@', (size_t)(end - p))) {
        snprintf(err, errlen, "%.300s: user names in URLs are not supported", s);
        return -1;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof u->host) {
        snprintf(err, errlen, "%.300s: no host, or a host name too long", s);
        return -1;
    }
    memcpy(u->host, hs, hl);
    u->port = u->tls ? 443 : 80;
    if (port) {
        char *e;
        errno = 0;
        unsigned long v = strtoul(port, &e, 10);
        if (port == end || e != end || errno || v == 0 || v > 65535 || !isdigit((unsigned char)*port)) {
            snprintf(err, errlen, "%.300s: bad port", s);
            return -1;
        }
        u->port = (uint16_t)v;
    }
    bool v6 = strchr(u->host, ':') != NULL;
    bool dflt = u->port == (u->tls ? 443 : 80);
    char portbuf[8] = "";
    if (!dflt)
        snprintf(portbuf, sizeof portbuf, ":%u", u->port);
    snprintf(u->authority, sizeof u->authority, "%s%s%s%s", v6 ? "[" : "", u->host,
             v6 ? "]" : "", portbuf);
    size_t tl = strcspn(end, "#");
    if (tl >= sizeof u->target - 1) {
        snprintf(err, errlen, "%.100s...: the URL is too long", s);
        return -1;
    }
    if (tl == 0 || end[0] != '/')
        u->target[0] = '/';
    memcpy(u->target + strlen(u->target), end, tl);
    for (const char *q = u->target; *q; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) {
            snprintf(err, errlen, "%.300s: spaces and control characters must be %%-encoded", s);
            return -1;
        }
    return 0;
}


/* RFC 3986 section 5.2.4: remove "." and ".." segments from the path p (in place). */
void remove_dot_segments(char *p)
{
    char *in = p, *out = p;   /* out never passes in */
    while (*in) {
        if (!strncmp(in, "../", 3)) {
            in += 3;                                   /* A */
        } else if (!strncmp(in, "./", 2)) {
            in += 2;
        } else if (!strncmp(in, "/./", 3)) {
            in += 2;                                   /* B: "/./" becomes "/" */
        } else if (!strcmp(in, "/.")) {
            in[1] = 0;                                 /* "/." becomes "/" */
        } else if (!strncmp(in, "/../", 4) || !strcmp(in, "/..")) {
            /* C: "/../" becomes "/", and the last segment of the output goes. */
            if (in[3] == '/')
                in += 3;
            else {
                in += 2;
                *in = '/';   /* "/.." at the end: in now points at a "/" of its own */
            }
            while (out > p && *--out != '/')
                ;
        } else if (!strcmp(in, ".") || !strcmp(in, "..")) {
            in += strlen(in);                          /* D */
        } else {
            /* E: the first segment, with its leading "/", moves to the output. */
            do
                *out++ = *in++;
            while (*in && *in != '/');
        }
    }
    *out = 0;
}

/* A reference's scheme ("http:" in "http://..."): its length without the colon, or 0. */
static size_t scheme_len(const char *s)
{
    if (!isalpha((unsigned char)s[0]))
        return 0;
    size_t i = 1;
    while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')
        i++;
    return s[i] == ':' ? i : 0;
}

/* Set u's target from a path (dots removed here) and a query (with its '?', or ""). */
static int set_target(url *u, char *path, const char *query, const char *ref, char *err,
                      size_t errlen)
{
    remove_dot_segments(path);
    int n = snprintf(u->target, sizeof u->target, "%s%s%s", path[0] == '/' ? "" : "/", path,
                     query);
    if (n < 0 || (size_t)n >= sizeof u->target) {
        snprintf(err, errlen, "%.100s...: the URL is too long", ref);
        return -1;
    }
    for (const char *q = u->target; *q; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) {
            snprintf(err, errlen, "%.300s: spaces and control characters must be %%-encoded",
                     ref);
            return -1;
        }
    return 0;
}

int resolve_url(const url *base, const char *ref, url *out, char *err, size_t errlen)
{
    char path[sizeof out->target + 2];
    size_t sl = scheme_len(ref);
    if (sl || !strncmp(ref, "//", 2)) {
        /* An absolute URL, or a network-path reference ("//host/path": the base's scheme). */
        char abs[sizeof out->target + 600];
        int n = sl ? snprintf(abs, sizeof abs, "%s", ref)
                   : snprintf(abs, sizeof abs, "%s:%s", base->tls ? "https" : "http", ref);
        if (n < 0 || (size_t)n >= sizeof abs) {
            snprintf(err, errlen, "%.100s...: the URL is too long", ref);
            return -1;
        }
        if (parse_url(abs, out, err, errlen) != 0)
            return -1;
        size_t pl = strcspn(out->target, "?");
        char query[sizeof out->target];
        snprintf(query, sizeof query, "%s", out->target + pl);
        memcpy(path, out->target, pl);
        path[pl] = 0;
        return set_target(out, path, query, ref, err, errlen);
    }
    /* The same authority: only the path and the query change (section 5.2.2). */
    *out = *base;
    size_t rl = strcspn(ref, "#");               /* the fragment is never sent */
    char r[sizeof out->target];
    if (rl >= sizeof r) {
        snprintf(err, errlen, "%.100s...: the URL is too long", ref);
        return -1;
    }
    memcpy(r, ref, rl);
    r[rl] = 0;
    size_t bpl = strcspn(base->target, "?");      /* the base's path */
    size_t rpl = strcspn(r, "?");                 /* the reference's path */
    const char *rquery = r + rpl;
    if (rpl == 0) {
        /* "" or "?q": the base's path; the reference's query, or the base's when it has none. */
        memcpy(path, base->target, bpl);
        path[bpl] = 0;
        return set_target(out, path, *rquery ? rquery : base->target + bpl, ref, err, errlen);
    }
    if (r[0] == '/') {
        memcpy(path, r, rpl);                     /* an absolute path */
        path[rpl] = 0;
    } else {
        /* A relative path: merged with the base's path up to its last "/" (section 5.2.3). */
        size_t dir = bpl;
        while (dir > 0 && base->target[dir - 1] != '/')
            dir--;
        if (dir + rpl >= sizeof path) {
            snprintf(err, errlen, "%.100s...: the URL is too long", ref);
            return -1;
        }
        memcpy(path, base->target, dir);
        memcpy(path + dir, r, rpl);
        path[dir + rpl] = 0;
    }
    return set_target(out, path, rquery, ref, err, errlen);
}

bool same_origin(const url *a, const url *b)
{
    return a->tls == b->tls && a->port == b->port && !strcasecmp(a->host, b->host);
}


int tool_usage_error(const char *tool, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tlsloop %s: ", tool);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (tlsloop %s --help lists the options)\n", tool);
    va_end(ap);
    return EXIT_USAGE;
}

int tool_add_header(char *buf, size_t cap, size_t *len, const char *h)
{
    if (!h || !strchr(h, ':') || strpbrk(h, "\r\n") || h[0] == ':')
        return -1;
    int n = snprintf(buf + *len, cap - *len, "%s\r\n", h);
    if (n < 0 || (size_t)n >= cap - *len)
        return -1;
    *len += (size_t)n;
    return 0;
}
