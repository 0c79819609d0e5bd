/* http_path.c - a request-target turned into a clean absolute path (tlsloop/http.h): decoded, then
 * normalised, so "%2e%2e" or "%2f" never smuggles a ".." past the check. Both steps work in the
 * output buffer: decoding never lengthens the path, normalising never moves a byte forward. */
#include <string.h>
#include <strings.h>

#include <tlsloop/http.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The path part of an absolute-form target ("http://host:port/p?q"), or NULL if it is not one. */
static const char *skip_authority(const char *t, const char *end)
{
    size_t skip;
    if (end - t >= 7 && strncasecmp(t, "http://", 7) == 0)
        skip = 7;
    else if (end - t >= 8 && strncasecmp(t, "https://", 8) == 0)
        skip = 8;
    else
        return NULL;
    const char *p = t + skip;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    return p;
}

ssize_t tl_http_normalize_path(const char *target, size_t len, char *out, size_t outlen)
{
    const char *t = target, *end = target + len;
    if (t == end)
        return -1;
    if (*t != '/') {
        const char *p = skip_authority(t, end);
        if (!p)
            return -1;   /* "*", authority-form, a relative path */
        t = p;
    }
    const char *pend = t;
    while (pend < end && *pend != '?' && *pend != '#')
        pend++;
    /* Room for the decoded path (never longer than the raw one), a leading '/' when an
     * absolute-form URL has none, a trailing '/', and the NUL. */
    if (outlen < (size_t)(pend - t) + 3)
        return -1;

    /* 1. Decode into out, starting with the '/' an absolute URL may lack. */
    size_t n = 0;
    out[n++] = '/';
    for (const char *p = t < pend && *t == '/' ? t + 1 : t; p < pend; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '%') {
            int hi = pend - p > 2 ? hexval(p[1]) : -1, lo = hi >= 0 ? hexval(p[2]) : -1;
            if (lo < 0)
                return -1;
            c = (unsigned char)(hi * 16 + lo);
            p += 2;
        }
        if (c < 0x20 || c == 0x7f)
            return -1;   /* NUL and control characters never name a file we serve */
        out[n++] = (char)c;
    }

    /* 2. Remove empty and "." segments, apply "..". w never passes the segment being read. */
    size_t w = 0, i = 0;
    bool trailing = false;
    while (i < n) {
        while (i < n && out[i] == '/')
            i++;
        if (i == n) {
            trailing = true;
            break;
        }
        size_t s = i;
        while (i < n && out[i] != '/')
            i++;
        size_t seg = i - s;
        if (seg == 1 && out[s] == '.') {
            trailing = i == n;
            continue;
        }
        if (seg == 2 && out[s] == '.' && out[s + 1] == '.') {
            if (w == 0)
                return -1;   /* above the root */
            while (out[w - 1] != '/')
                w--;
            w--;
            trailing = i == n;
            continue;
        }
        out[w++] = '/';
        memmove(out + w, out + s, seg);
        w += seg;
        trailing = false;
    }
    if (w == 0 || trailing)
        out[w++] = '/';
    out[w] = 0;
    return (ssize_t)w;
}
