/* proxyproto.c - PROXY protocol v1/v2 parsing and writing (see tlsloop/proxyproto.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <tlsloop/proxyproto.h>

static const char V1_PREFIX[] = "PROXY ";
static const uint8_t V2_SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define V2_LEN_INET 12
#define V2_LEN_INET6 36
#define V2_LEN_UNIX 216

/* CRC32C (Castagnoli), bit by bit: headers are small and this runs once per connection. */
static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* ---- v1 ---------------------------------------------------------------------------------- */

/* A port: decimal, no leading zero (but "0"), at most 65535. */
static bool parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static bool set_addr(struct sockaddr_storage *ss, int family, const char *ip, size_t n,
                     uint16_t port)
{
    char tmp[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof tmp)
        return false;
    memcpy(tmp, ip, n);
    tmp[n] = '\0';
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        return inet_pton(AF_INET, tmp, &sin->sin_addr) == 1;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    return inet_pton(AF_INET6, tmp, &sin6->sin6_addr) == 1;
}

static ssize_t parse_v1(const uint8_t *p, size_t len, tl_proxy_info *out)
{
    size_t cr = 0;
    for (size_t i = sizeof V1_PREFIX - 1; i < len && i < TL_PROXY_V1_MAX; i++) {
        if (p[i] == '\r') {
            cr = i;
            break;
        }
        if (p[i] < 0x20 || p[i] > 0x7e)
            return TL_PROXY_INVALID;
    }
    if (!cr)
        return len >= TL_PROXY_V1_MAX ? TL_PROXY_INVALID : TL_PROXY_INCOMPLETE;
    if (cr + 1 >= len)
        return TL_PROXY_INCOMPLETE;
    if (p[cr + 1] != '\n')
        return TL_PROXY_INVALID;

    /* Split the line after "PROXY " into tokens at single spaces. */
    const char *tok[6];
    size_t toklen[6], ntok = 0;
    const char *s = (const char *)p + sizeof V1_PREFIX - 1, *end = (const char *)p + cr;
    while (s <= end && ntok < 6) {
        const char *sp = memchr(s, ' ', (size_t)(end - s));
        const char *stop = sp ? sp : end;
        tok[ntok] = s;
        toklen[ntok++] = (size_t)(stop - s);
        s = stop + 1;
        if (!sp)
            break;
    }
    tl_proxy_info info = {.version = 1};
    if (ntok >= 1 && toklen[0] == 7 && memcmp(tok[0], "UNKNOWN", 7) == 0) {
        info.local = true; /* the rest of the line is to be ignored */
    } else {
        int family;
        if (ntok >= 1 && toklen[0] == 4 && memcmp(tok[0], "TCP4", 4) == 0)
            family = AF_INET;
        else if (ntok >= 1 && toklen[0] == 4 && memcmp(tok[0], "TCP6", 4) == 0)
            family = AF_INET6;
        else
            return TL_PROXY_INVALID;
        uint16_t sport, dport;
        if (ntok != 5 || s <= end || !parse_port(tok[3], toklen[3], &sport) ||
            !parse_port(tok[4], toklen[4], &dport) ||
            !set_addr(&info.src, family, tok[1], toklen[1], sport) ||
            !set_addr(&info.dst, family, tok[2], toklen[2], dport))
            return TL_PROXY_INVALID;
        info.family = family;
    }
    *out = info;
    return (ssize_t)(cr + 2);
}

/* ---- v2 ---------------------------------------------------------------------------------- */

/* Every TLV fits the area; the SSL TLV's sub-TLVs fit it too. */
static bool tlvs_fit(const uint8_t *t, size_t n, bool nested_ok)
{
    while (n > 0) {
        if (n < 3)
            return false;
        size_t l = ((size_t)t[1] << 8) | t[2];
        if (l > n - 3)
            return false;
        if (t[0] == TL_PP2_SSL && nested_ok && (l < 5 || !tlvs_fit(t + 3 + 5, l - 5, false)))
            return false;
        t += 3 + l;
        n -= 3 + l;
    }
    return true;
}

static bool find_tlv(const uint8_t *t, size_t n, uint8_t type, const uint8_t **v, size_t *l)
{
    while (n >= 3) {
        size_t len = ((size_t)t[1] << 8) | t[2];
        if (len > n - 3)
            return false;
        if (t[0] == type) {
            *v = t + 3;
            *l = len;
            return true;
        }
        t += 3 + len;
        n -= 3 + len;
    }
    return false;
}

static ssize_t parse_v2(const uint8_t *p, size_t len, tl_proxy_info *out)
{
    uint8_t ver_cmd = p[12], fam = p[13];
    size_t body = ((size_t)p[14] << 8) | p[15], total = TL_PROXY_V2_HEADER + body;
    if ((ver_cmd >> 4) != 2 || (ver_cmd & 0xF) > 1)
        return TL_PROXY_INVALID;
    size_t addr_len;
    switch (fam >> 4) {
    case 0: addr_len = 0; break;
    case 1: addr_len = V2_LEN_INET; break;
    case 2: addr_len = V2_LEN_INET6; break;
    case 3: addr_len = V2_LEN_UNIX; break;
    default: return TL_PROXY_INVALID;
    }
    if ((fam & 0xF) > 2 || body < addr_len)
        return TL_PROXY_INVALID;
    if (len < total)
        return TL_PROXY_INCOMPLETE;
    const uint8_t *a = p + TL_PROXY_V2_HEADER;
    tl_proxy_info info = {.version = 2, .tlvs = a + addr_len, .tlvs_len = body - addr_len};
    if (!tlvs_fit(info.tlvs, info.tlvs_len, true))
        return TL_PROXY_INVALID;
    const uint8_t *crc;
    size_t crc_len;
    if (find_tlv(info.tlvs, info.tlvs_len, TL_PP2_CRC32C, &crc, &crc_len)) {
        if (crc_len != 4)
            return TL_PROXY_INVALID;
        static const uint8_t zero[4];
        size_t at = (size_t)(crc - p);
        uint32_t c = crc32c(0, p, at);
        c = crc32c(c, zero, 4);
        c = crc32c(c, p + at + 4, total - at - 4);
        uint32_t want = ((uint32_t)crc[0] << 24) | ((uint32_t)crc[1] << 16) |
                        ((uint32_t)crc[2] << 8) | crc[3];
        if (c != want)
            return TL_PROXY_INVALID;
    }
    bool stream = (fam & 0xF) == 1;
    if ((ver_cmd & 0xF) == 0 || (fam >> 4) == 0 || (fam >> 4) == 3) {
        info.local = true; /* LOCAL, UNSPEC, or a UNIX socket: no TCP peer to report */
    } else if (!stream) {
        return TL_PROXY_INVALID; /* a datagram peer on a stream listener */
    } else if ((fam >> 4) == 1) {
        struct sockaddr_in *s = (struct sockaddr_in *)&info.src;
        struct sockaddr_in *d = (struct sockaddr_in *)&info.dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
        info.family = AF_INET;
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&info.src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&info.dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
        info.family = AF_INET6;
    }
    *out = info;
    return (ssize_t)total;
}

ssize_t tl_proxy_parse(const void *buf, size_t len, tl_proxy_info *out)
{
    const uint8_t *p = buf;
    if (len == 0)
        return TL_PROXY_INCOMPLETE;
    if (p[0] == 'P') {
        size_t n = len < sizeof V1_PREFIX - 1 ? len : sizeof V1_PREFIX - 1;
        if (memcmp(p, V1_PREFIX, n) != 0)
            return TL_PROXY_INVALID;
        return n < sizeof V1_PREFIX - 1 ? TL_PROXY_INCOMPLETE : parse_v1(p, len, out);
    }
    size_t n = len < sizeof V2_SIG ? len : sizeof V2_SIG;
    if (memcmp(p, V2_SIG, n) != 0)
        return TL_PROXY_INVALID;
    if (len < TL_PROXY_V2_HEADER)
        return TL_PROXY_INCOMPLETE;
    return parse_v2(p, len, out);
}

bool tl_proxy_tlv(const tl_proxy_info *info, uint8_t type, const uint8_t **value, size_t *len)
{
    if (info->version != 2)
        return false;
    if (type >= TL_PP2_SSL_VERSION && type <= TL_PP2_SSL_KEY_ALG) {
        const uint8_t *ssl;
        size_t ssl_len;
        if (!find_tlv(info->tlvs, info->tlvs_len, TL_PP2_SSL, &ssl, &ssl_len) || ssl_len < 5)
            return false;
        return find_tlv(ssl + 5, ssl_len - 5, type, value, len);
    }
    return find_tlv(info->tlvs, info->tlvs_len, type, value, len);
}

/* ---- writing ----------------------------------------------------------------------------- */

static bool addr_parts(const struct sockaddr *sa, const void **ip, uint16_t *port_be)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        *ip = &s->sin_addr;
        *port_be = s->sin_port;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        *ip = &s->sin6_addr;
        *port_be = s->sin6_port;
        return true;
    }
    return false;
}

ssize_t tl_proxy_write_v1(char *buf, size_t cap, const struct sockaddr *src,
                          const struct sockaddr *dst)
{
    int n;
    if (!src) {
        n = snprintf(buf, cap, "PROXY UNKNOWN\r\n");
    } else {
        const void *sip, *dip;
        uint16_t sp, dp;
        char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
        if (!dst || src->sa_family != dst->sa_family || !addr_parts(src, &sip, &sp) ||
            !addr_parts(dst, &dip, &dp) || !inet_ntop(src->sa_family, sip, s, sizeof s) ||
            !inet_ntop(dst->sa_family, dip, d, sizeof d))
            return -1;
        n = snprintf(buf, cap, "PROXY %s %s %s %u %u\r\n",
                     src->sa_family == AF_INET ? "TCP4" : "TCP6", s, d, ntohs(sp), ntohs(dp));
    }
    /* snprintf writes a NUL the header does not include: it must fit as well. */
    return n > 0 && (size_t)n < cap ? n : -1;
}

ssize_t tl_proxy_write_v2(uint8_t *buf, size_t cap, const struct sockaddr *src,
                          const struct sockaddr *dst, const tl_proxy_tlv_out *tlvs,
                          size_t ntlvs, bool crc)
{
    const void *sip = NULL, *dip = NULL;
    uint16_t sp = 0, dp = 0;
    size_t addr_len = 0, ip_len = 0;
    uint8_t fam = 0x00;
    if (src) {
        if (!dst || src->sa_family != dst->sa_family || !addr_parts(src, &sip, &sp) ||
            !addr_parts(dst, &dip, &dp))
            return -1;
        bool v4 = src->sa_family == AF_INET;
        ip_len = v4 ? 4 : 16;
        addr_len = v4 ? V2_LEN_INET : V2_LEN_INET6;
        fam = v4 ? 0x11 : 0x21; /* INET or INET6, STREAM */
    }
    size_t body = addr_len + (crc ? 7 : 0);
    for (size_t i = 0; i < ntlvs; i++) {
        if (tlvs[i].len > 65535 || tlvs[i].type == TL_PP2_CRC32C)
            return -1;
        body += 3 + tlvs[i].len;
    }
    if (body > 65535 || TL_PROXY_V2_HEADER + body > cap)
        return -1;
    uint8_t *p = buf;
    memcpy(p, V2_SIG, sizeof V2_SIG);
    p[12] = src ? 0x21 : 0x20; /* version 2, PROXY or LOCAL */
    p[13] = fam;
    p[14] = (uint8_t)(body >> 8);
    p[15] = (uint8_t)body;
    p += TL_PROXY_V2_HEADER;
    if (src) {
        memcpy(p, sip, ip_len);
        memcpy(p + ip_len, dip, ip_len);
        memcpy(p + 2 * ip_len, &sp, 2);
        memcpy(p + 2 * ip_len + 2, &dp, 2);
        p += addr_len;
    }
    for (size_t i = 0; i < ntlvs; i++) {
        p[0] = tlvs[i].type;
        p[1] = (uint8_t)(tlvs[i].len >> 8);
        p[2] = (uint8_t)tlvs[i].len;
        if (tlvs[i].len)
            memcpy(p + 3, tlvs[i].value, tlvs[i].len);
        p += 3 + tlvs[i].len;
    }
    size_t total = TL_PROXY_V2_HEADER + body;
    if (crc) {
        p[0] = TL_PP2_CRC32C;
        p[1] = 0;
        p[2] = 4;
        memset(p + 3, 0, 4); /* the checksum covers the header with this field zero */
        uint32_t c = crc32c(0, buf, total);
        p[3] = (uint8_t)(c >> 24);
        p[4] = (uint8_t)(c >> 16);
        p[5] = (uint8_t)(c >> 8);
        p[6] = (uint8_t)c;
    }
    return (ssize_t)total;
}
