/* server_sstore_proto.c - memcached's text protocol and Redis's RESP, as much as the session
 * store needs: get and set with an expiry, and their replies (src/server/sstore_int.h).
 * memcached: protocol.txt of memcached ("get <key>\r\n", "set <key> <flags> <exptime> <bytes>\r\n
 * <data>\r\n"; replies VALUE ... END, END, STORED, NOT_STORED, ERROR, CLIENT_ERROR, SERVER_ERROR).
 * Redis: RESP2 arrays of bulk strings for commands; replies $-1 (nil), $N bulk, +simple,
 * -error, :integer. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/sstore_int.h"
#include "util/tli.h"

int tli_sstore_parse_url(const char *url, tli_sstore_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof out->addr);
    const char *rest;
    if (strncmp(url, "memcached://", 12) == 0) {
        out->kind = TLI_SSTORE_MEMCACHED;
        rest = url + 12;
    } else if (strncmp(url, "redis://", 8) == 0) {
        out->kind = TLI_SSTORE_REDIS;
        rest = url + 8;
    } else {
        tli_fmt(err, errlen, "session-store %s: expected memcached://HOST:PORT or "
                "redis://HOST:PORT", url);
        return -1;
    }
    char host[64];
    const char *colon;
    if (*rest == '[') {
        const char *close = strchr(rest, ']');
        if (!close || close[1] != ':' || (size_t)(close - rest - 1) >= sizeof host)
            goto bad;
        memcpy(host, rest + 1, (size_t)(close - rest - 1));
        host[close - rest - 1] = 0;
        colon = close + 1;
    } else {
        colon = strrchr(rest, ':');
        if (!colon || (size_t)(colon - rest) >= sizeof host)
            goto bad;
        memcpy(host, rest, (size_t)(colon - rest));
        host[colon - rest] = 0;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535 || end == colon + 1)
        goto bad;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->addr;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        out->addrlen = sizeof *in4;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        out->addrlen = sizeof *in6;
    } else {
        tli_fmt(err, errlen, "session-store %s: the host must be an IP address or localhost "
                "(no name lookups on the loop)", url);
        return -1;
    }
    snprintf(out->text, sizeof out->text, "%s", url);
    return 0;
bad:
    tli_fmt(err, errlen, "session-store %s: expected %s://HOST:PORT (a port 1-65535; IPv6 in "
            "brackets)", url, out->kind == TLI_SSTORE_REDIS ? "redis" : "memcached");
    return -1;
}

void tli_sstore_key(const uint8_t *id, size_t id_len, char out[TLI_SSTORE_KEY_MAX])
{
    static const char hex[] = "0123456789abcdef";
    size_t w = (size_t)snprintf(out, TLI_SSTORE_KEY_MAX, "tlsloop:s:");
    for (size_t i = 0; i < id_len && i < 32; i++) {
        out[w++] = hex[id[i] >> 4];
        out[w++] = hex[id[i] & 15];
    }
    out[w] = 0;
}

/* RESP: an array of bulk strings. */
static int resp_command(tl_buf *b, int argc, const char *const *argv, const size_t *lens)
{
    char head[32];
    int n = snprintf(head, sizeof head, "*%d\r\n", argc);
    if (tl_buf_append(b, head, (size_t)n) != 0)
        return -1;
    for (int i = 0; i < argc; i++) {
        n = snprintf(head, sizeof head, "$%zu\r\n", lens[i]);
        if (tl_buf_append(b, head, (size_t)n) != 0 || tl_buf_append(b, argv[i], lens[i]) != 0 ||
            tl_buf_append(b, "\r\n", 2) != 0)
            return -1;
    }
    return 0;
}

int tli_sstore_req_get(tl_buf *b, tli_sstore_kind kind, const char *key)
{
    if (kind == TLI_SSTORE_REDIS) {
        const char *argv[] = {"GET", key};
        size_t lens[] = {3, strlen(key)};
        return resp_command(b, 2, argv, lens);
    }
    char line[TLI_SSTORE_KEY_MAX + 8];
    int n = snprintf(line, sizeof line, "get %s\r\n", key);
    return tl_buf_append(b, line, (size_t)n);
}

int tli_sstore_req_set(tl_buf *b, tli_sstore_kind kind, const char *key, const void *value,
                       size_t len, unsigned expiry_s)
{
    if (expiry_s < 1)
        expiry_s = 1;
    /* memcached reads an expiry over 30 days as a Unix time; sessions live at most 7. */
    if (expiry_s > 30 * 24 * 3600)
        expiry_s = 30 * 24 * 3600;
    if (kind == TLI_SSTORE_REDIS) {
        char ex[16];
        snprintf(ex, sizeof ex, "%u", expiry_s);
        const char *argv[] = {"SET", key, value, "EX", ex};
        size_t lens[] = {3, strlen(key), len, 2, strlen(ex)};
        return resp_command(b, 5, argv, lens);
    }
    char line[TLI_SSTORE_KEY_MAX + 64];
    int n = snprintf(line, sizeof line, "set %s 0 %u %zu\r\n", key, expiry_s, len);
    return tl_buf_append(b, line, (size_t)n) == 0 && tl_buf_append(b, value, len) == 0 &&
                   tl_buf_append(b, "\r\n", 2) == 0
               ? 0
               : -1;
}

/* The line at p: its length without CRLF in *len; 0 incomplete; -1 malformed (a bare CR or LF,
 * or longer than max without an end). */
static int line_at(const uint8_t *p, size_t n, size_t max, size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r') {
            if (i + 1 == n)
                return 0;
            if (p[i + 1] != '\n')
                return -1;
            *len = i;
            return 1;
        }
        if (p[i] == '\n' || i >= max)
            return -1;
    }
    return n > max ? -1 : 0;
}

static bool starts(const uint8_t *p, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n >= w && memcmp(p, word, w) == 0;
}

/* A decimal number of digits p[0..n), at most max. -1 when it is not one. */
static long long number(const uint8_t *p, size_t n, long long max)
{
    if (n == 0 || n > 18)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v <= max ? v : -1;
}

#define LINE_MAX_MC 512   /* a VALUE line: the key (<= 250), flags, bytes, a CAS */

static ssize_t parse_memcached(const uint8_t *p, size_t n, tli_reply *r)
{
    size_t len;
    int got = line_at(p, n, LINE_MAX_MC, &len);
    if (got <= 0)
        return got;
    memset(r, 0, sizeof *r);
    if (len == 3 && memcmp(p, "END", 3) == 0) {
        r->kind = TLI_REPLY_MISS;
        return (ssize_t)len + 2;
    }
    if (len == 6 && memcmp(p, "STORED", 6) == 0) {
        r->kind = TLI_REPLY_STORED;
        return (ssize_t)len + 2;
    }
    if (starts(p, len, "VALUE ")) {
        /* VALUE <key> <flags> <bytes> [<cas>] */
        const uint8_t *f[5];
        size_t fl[5], nf = 0;
        for (size_t i = 6; i < len && nf < 5;) {
            size_t j = i;
            while (j < len && p[j] != ' ')
                j++;
            if (j == i)
                return -1;
            f[nf] = p + i;
            fl[nf++] = j - i;
            i = j + 1;
        }
        if (nf < 3)
            return -1;
        long long bytes = number(f[2], fl[2], TLI_SSTORE_VALUE_MAX);
        if (bytes < 0 || number(f[1], fl[1], 0xffffffffll) < 0)
            return -1;
        size_t data = len + 2, need = data + (size_t)bytes + 2 + 5;   /* data CRLF END CRLF */
        if (n < need)
            return 0;
        if (memcmp(p + data + bytes, "\r\nEND\r\n", 7) != 0)
            return -1;   /* one key per get: exactly one value, then END */
        r->kind = TLI_REPLY_VALUE;
        r->data = p + data;
        r->len = (size_t)bytes;
        return (ssize_t)need;
    }
    if (starts(p, len, "NOT_STORED") || starts(p, len, "SERVER_ERROR") ||
        starts(p, len, "CLIENT_ERROR") || (len == 5 && memcmp(p, "ERROR", 5) == 0)) {
        r->kind = TLI_REPLY_ERROR;
        r->data = p;
        r->len = len;
        return (ssize_t)len + 2;
    }
    return -1;
}

static ssize_t parse_resp(const uint8_t *p, size_t n, tli_reply *r)
{
    size_t len;
    int got = line_at(p, n, LINE_MAX_MC, &len);
    if (got <= 0)
        return got;
    memset(r, 0, sizeof *r);
    if (len == 0)
        return -1;
    switch (p[0]) {
    case '+':
    case ':':
        r->kind = TLI_REPLY_STORED;
        return (ssize_t)len + 2;
    case '-':
        r->kind = TLI_REPLY_ERROR;
        r->data = p + 1;
        r->len = len - 1;
        return (ssize_t)len + 2;
    case '$': {
        if (len == 3 && memcmp(p, "$-1", 3) == 0) {
            r->kind = TLI_REPLY_MISS;
            return 5;
        }
        long long bytes = number(p + 1, len - 1, TLI_SSTORE_VALUE_MAX);
        if (bytes < 0)
            return -1;
        size_t need = len + 2 + (size_t)bytes + 2;
        if (n < need)
            return 0;
        if (p[need - 2] != '\r' || p[need - 1] != '\n')
            return -1;
        r->kind = TLI_REPLY_VALUE;
        r->data = p + len + 2;
        r->len = (size_t)bytes;
        return (ssize_t)need;
    }
    default:
        return -1;   /* arrays and RESP3 types: nothing we asked for answers with them */
    }
}

ssize_t tli_sstore_parse_reply(tli_sstore_kind kind, const uint8_t *p, size_t n, tli_reply *r)
{
    return kind == TLI_SSTORE_REDIS ? parse_resp(p, n, r) : parse_memcached(p, n, r);
}
