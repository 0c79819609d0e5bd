/* server_trust.c - addresses: their text for messages, the ranges of proxy-from and a listener's
 * from=, and whom a PROXY listener believes.
 *
 * A PROXY header rewrites who the client is (the address in logs, the per-source limit), so a
 * proxy listener takes one only from the balancers the operator names; anyone else is closed
 * before a byte is read (server_proxy_header.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

/* ---- addresses and ranges --------------------------------------------------------------- */

void tli_addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        tli_fmt(buf, len, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        tli_fmt(buf, len, "[%s]:%u", host, port);
    } else {
        tli_fmt(buf, len, "(family %d)", sa->sa_family);
    }
}

int tli_cidr_parse(const char *s, tli_cidr *out, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    if (hl == 0 || hl >= sizeof host) {
        tli_fmt(err, errlen, "'%s': expected an address or ADDR/BITS (10.0.0.0/8, 2001:db8::/32)", s);
        return -1;
    }
    memcpy(host, s, hl);
    host[hl] = 0;
    memset(out, 0, sizeof *out);
    unsigned max;
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        tli_fmt(err, errlen, "'%s': '%s' is not an IPv4 or IPv6 address (names are not accepted)",
                s, host);
        return -1;
    }
    unsigned bits = max;
    if (slash) {
        const char *b = slash + 1;
        char *end;
        unsigned long v = strtoul(b, &end, 10);
        if (*b < '0' || *b > '9' || *end || v > max || (b[0] == '0' && b[1])) {
            tli_fmt(err, errlen, "'%s': the prefix length must be 0 to %u", s, max);
            return -1;
        }
        bits = (unsigned)v;
    }
    out->bits = (uint8_t)bits;
    /* Host bits set ("10.1.2.3/8") is most likely a typo for a narrower or wider range: say so
     * instead of guessing. */
    for (unsigned i = bits; i < max; i++)
        if (out->addr[i / 8] & (0x80 >> (i % 8))) {
            tli_cidr net = *out;
            for (unsigned j = bits; j < max; j++)
                net.addr[j / 8] &= (uint8_t) ~(0x80 >> (j % 8));
            char text[INET6_ADDRSTRLEN];
            inet_ntop(out->family, net.addr, text, sizeof text);
            tli_fmt(err, errlen, "'%s': bits set after the /%u prefix (the range is %s/%u; for "
                    "the one address give it without /%u)", s, bits, text, bits, bits);
            return -1;
        }
    return 0;
}

int tli_cidr_list_add(tli_cidr **list, size_t *n, const char *s, char *err, size_t errlen)
{
    if (!s || !*s) {
        tli_fmt(err, errlen, "expected CIDR[,CIDR...] such as 10.0.0.0/8,2001:db8::/32");
        return -1;
    }
    size_t old = *n;
    for (const char *p = s;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char one[64];
        tli_cidr c;
        if (len >= sizeof one) {
            tli_fmt(err, errlen, "'%.*s': too long for an address range", (int)len, p);
            goto fail;
        }
        memcpy(one, p, len);
        one[len] = 0;
        if (tli_cidr_parse(one, &c, err, errlen) != 0)
            goto fail;
        tli_cidr *grown = realloc(*list, (*n + 1) * sizeof **list);
        if (!grown) {
            tli_fmt(err, errlen, "out of memory");
            goto fail;
        }
        *list = grown;
        (*list)[(*n)++] = c;
        if (!comma)
            return 0;
        p = comma + 1;
    }
fail:
    *n = old;   /* a bad value adds nothing */
    return -1;
}

static bool in_range(const tli_cidr *c, const uint8_t *addr)
{
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, addr, full) != 0)
        return false;
    return !rest || ((c->addr[full] ^ addr[full]) & (uint8_t)(0xFF << (8 - rest))) == 0;
}

bool tli_cidr_match(const tli_cidr *list, size_t n, const struct sockaddr *sa)
{
    const uint8_t *a;
    int family = sa->sa_family;
    if (family == AF_INET) {
        a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        a = a6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            family = AF_INET;
            a += 12;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (list[i].family == family && in_range(&list[i], a))
            return true;
    return false;
}

bool tli_proxy_trusted(const tl_server_config *cfg, const tli_listen *L, const struct sockaddr *sa)
{
    return L->n_from ? tli_cidr_match(L->from, L->n_from, sa)
                     : tli_cidr_match(cfg->proxy_from, cfg->n_proxy_from, sa);
}

int tli_check_proxy_trust(const tl_server_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n_listens; i++) {
        const tli_listen *L = &cfg->listens[i];
        if (L->proxy && !L->n_from && !cfg->n_proxy_from) {
            tli_fmt(err, errlen, "listen %s: a PROXY header says who the client is, so it may "
                    "come only from balancers you run: name them with proxy-from CIDR[,CIDR...] "
                    "(e.g. --proxy-from 10.0.0.0/8) or on the listener (%s,from=10.0.0.0/8)",
                    L->text, L->text);
            return -1;
        }
    }
    return 0;
}
