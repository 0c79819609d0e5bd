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
