/* server_config_parse.c - the values of the server's options as text: whole numbers, durations,
 * sizes, on/off, and the listen address with its flags (tlsloop/server.h for the public ones).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

/* ---- value parsers ---------------------------------------------------------------------- */

/* A non-negative integer with nothing after it. */
int tli_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* "100us" (only where allow_us), "250ms", "10s", "5m", "2h", or a bare number of seconds, in
 * microseconds, at most max_us. */
int tli_parse_duration_us(const char *s, bool allow_us, uint64_t max_us, uint64_t *out_us)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    uint64_t mult;
    if (allow_us && strcmp(end, "us") == 0)
        mult = 1;
    else if (strcmp(end, "ms") == 0)
        mult = 1000;
    else if (*end == 0 || strcmp(end, "s") == 0)
        mult = 1000000;
    else if (strcmp(end, "m") == 0)
        mult = 60000000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000000ull;
    else
        return -1;
    if (v > max_us / mult)
        return -1;
    *out_us = v * mult;
    return 0;
}

/* Deadlines, in milliseconds: 49 days (2^32 ms) is plenty for any of them. */
int tli_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    uint64_t us;
    if (tli_parse_duration_us(s, false, (uint64_t)UINT32_MAX * 1000, &us) != 0)
        return -1;
    *out_ms = us / 1000;
    return 0;
}

int tl_server_parse_duration(const char *s, uint64_t *ms)
{
    return tli_parse_duration_ms(s, ms);
}

int tl_server_check_duration(const char *v, char *err, size_t errlen)
{
    uint64_t ms;
    if (tli_parse_duration_ms(v, &ms) != 0 || ms == 0)
        return tli_fmt(err, errlen, "expected a duration above 0 such as 500ms, 10s or 2m"), -1;
    return 0;
}

int tl_server_parse_size(const char *s, uint64_t *bytes)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    if (*end) {
        if (end[1])
            return -1;
        switch (*end | 0x20) {   /* one letter, either case */
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        default: return -1;
        }
    }
    if (v > (UINT64_MAX >> 2) >> shift)
        return -1;
    *bytes = (uint64_t)v << shift;
    return 0;
}

int tli_parse_bool(const char *s, bool *out)
{
    if (!s || !*s || !strcmp(s, "on") || !strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "1"))
        *out = true;
    else if (!strcmp(s, "off") || !strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "0"))
        *out = false;
    else
        return -1;
    return 0;
}

/* "[ADDR:]PORT[,plain|,tls][,proxy[,from=CIDR...]]": ADDR is IPv4, [IPv6] or *; no ADDR means
 * every IPv4 address; each from= is a range trusted to send the PROXY header. */
int tli_parse_listen(const char *s, tli_listen *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->tls = true;
    char buf[sizeof out->text];
    if (strlen(s) >= sizeof buf)
        goto bad;
    strcpy(buf, s);
    tli_fmt(out->text, sizeof out->text, "%s", s);
    char *flags = strchr(buf, ',');
    if (flags)
        *flags++ = 0;
    for (char *f = flags; f && *f;) {
        char *next = strchr(f, ',');
        if (next)
            *next++ = 0;
        if (!strcmp(f, "plain"))
            out->tls = false;
        else if (!strcmp(f, "tls"))
            out->tls = true;
        else if (!strcmp(f, "proxy"))
            out->proxy = true;
        else if (!strncmp(f, "from=", 5)) {
            char msg[200];
            if (out->n_from == TLI_LISTEN_FROM_MAX) {
                tli_fmt(err, errlen, "listen %s: at most %d from= (give longer lists with "
                        "proxy-from)", s, TLI_LISTEN_FROM_MAX);
                return -1;
            }
            if (tli_cidr_parse(f + 5, &out->from[out->n_from], msg, sizeof msg) != 0) {
                tli_fmt(err, errlen, "listen %s: from=%s: %s", s, f + 5, msg);
                return -1;
            }
            out->n_from++;
        } else {
            tli_fmt(err, errlen, "listen %s: unknown flag '%s' (plain, tls, proxy or from=CIDR)",
                    s, f);
            return -1;
        }
        f = next;
    }
    if (out->n_from && !out->proxy) {
        tli_fmt(err, errlen, "listen %s: from= says who may send a PROXY header: add ,proxy", s);
        return -1;
    }
    char *host = NULL, *port = buf;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || close[1] != ':')
            goto bad;
        *close = 0;
        host = buf + 1;
        port = close + 2;
    } else if (strchr(buf, ':')) {
        char *colon = strrchr(buf, ':');
        *colon = 0;
        host = buf;
        port = colon + 1;
    }
    uint64_t p;
    if (tli_parse_uint(port, 65535, &p) != 0)
        goto bad;
    if (host && strchr(host, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->addr;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)p);
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
            goto bad;
        out->addrlen = sizeof *in6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&out->addr;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)p);
        if (!host || !*host || !strcmp(host, "*"))
            in->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
            goto bad;
        out->addrlen = sizeof *in;
    }
    return 0;
bad:
    tli_fmt(err, errlen, "listen %s: expected [ADDR:]PORT[,plain][,proxy,from=CIDR] with ADDR an IPv4 "
                         "address, [IPv6] or *, and PORT 0-65535", s);
    return -1;
}
