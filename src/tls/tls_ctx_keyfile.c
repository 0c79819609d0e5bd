/* tls_ctx_keyfile.c - the ticket key file's two formats, parsed and written (tl_ticket_keys_* in
 * tlsloop/tls_ctx.h; docs/session-store.md, "Key rotation"). The ring that uses the keys is
 * tls_ctx_tickets.c's; the program that makes and rotates files is tools/ticket_keys.c. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "tls/tli_tls.h"
#include "util/tli.h"

/* tli_fmt, then -1. */
#define FAIL(...) (tli_fmt(__VA_ARGS__), -1)

#define TLI_KEYS_MAX 64   /* a ring's most */

static const char MAGIC[] = "# tlsloop ticket keys";

static const char *const ROLE_NAMES[] = {"previous", "current", "next"};

const char *tl_ticket_key_role_name(tl_ticket_key_role role)
{
    return (unsigned)role < 3 ? ROLE_NAMES[role] : "?";
}

bool tl_ticket_keys_is_text(const void *data, size_t len)
{
    return len >= sizeof MAGIC - 1 && memcmp(data, MAGIC, sizeof MAGIC - 1) == 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One "ROLE CREATED HEX" line (without its newline) into k. 0, or -1 with err set. */
static int parse_line(const char *p, size_t n, unsigned lineno, tl_ticket_key_entry *k, char *err,
                      size_t errlen)
{
    char line[512];
    if (n >= sizeof line)
        return FAIL(err, errlen, "line %u: too long", lineno);
    memcpy(line, p, n);
    line[n] = 0;
    char role[16], hex[2 * TL_TICKET_KEY_LEN + 2];
    long long created;
    char extra;
    int got = sscanf(line, "%15s %lld %161s %c", role, &created, hex, &extra);
    OPENSSL_cleanse(line, sizeof line);
    if (got != 3) {
        OPENSSL_cleanse(hex, sizeof hex);
        return FAIL(err, errlen, "line %u: expected 'previous|current|next UNIXTIME "
                       "HEXKEY' (%d hex digits)", lineno, 2 * TL_TICKET_KEY_LEN);
    }
    int r = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(role, ROLE_NAMES[i]) == 0)
            r = i;
    if (r < 0) {
        OPENSSL_cleanse(hex, sizeof hex);
        return FAIL(err, errlen, "line %u: role '%s' is not previous, current or next", lineno,
                       role);
    }
    size_t digits = strlen(hex);
    if (digits != 2 * TL_TICKET_KEY_LEN) {
        OPENSSL_cleanse(hex, sizeof hex);
        return FAIL(err, errlen, "line %u: the key has %zu hex digits, not %d", lineno, digits,
                    2 * TL_TICKET_KEY_LEN);
    }
    for (int i = 0; i < TL_TICKET_KEY_LEN; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            OPENSSL_cleanse(hex, sizeof hex);
            return FAIL(err, errlen, "line %u: the key is not hexadecimal", lineno);
        }
        k->key[i] = (uint8_t)(hi << 4 | lo);
    }
    OPENSSL_cleanse(hex, sizeof hex);
    if (created < 0)
        return FAIL(err, errlen, "line %u: negative creation time", lineno);
    k->role = (tl_ticket_key_role)r;
    k->created = created;
    return 0;
}

static int parse_text(const char *s, size_t len, tl_ticket_key_entry *out, size_t max, size_t *n,
                      char *err, size_t errlen)
{
    size_t count = 0;
    unsigned lineno = 0, current = 0, next = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - s) : len;
        const char *p = s + i;
        size_t l = end - i;
        lineno++;
        i = nl ? end + 1 : len;
        while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t'))
            l--;
        while (l > 0 && (*p == ' ' || *p == '\t'))
            p++, l--;
        if (l == 0 || *p == '#')
            continue;
        if (count == max)
            return FAIL(err, errlen, "more than %zu keys", max);
        if (parse_line(p, l, lineno, &out[count], err, errlen) != 0)
            return -1;
        current += out[count].role == TL_TICKET_KEY_CURRENT;
        next += out[count].role == TL_TICKET_KEY_NEXT;
        count++;
    }
    if (current != 1)
        return FAIL(err, errlen, "%s current key (exactly one is needed: it encrypts)",
                       current ? "more than one" : "no");
    if (next > 1)
        return FAIL(err, errlen, "more than one next key");
    *n = count;
    return 0;
}

int tl_ticket_keys_parse(const void *data, size_t len, tl_ticket_key_entry *out, size_t max,
                         size_t *n, char *err, size_t errlen)
{
    if (!err)
        errlen = 0;
    *n = 0;
    int rc;
    if (tl_ticket_keys_is_text(data, len)) {
        rc = parse_text(data, len, out, max, n, err, errlen);
    } else if (len == 0) {
        rc = FAIL(err, errlen, "empty; make one with: tlsloop ticket-keys new FILE");
    } else if (len % TL_TICKET_KEY_LEN != 0) {
        rc = FAIL(err, errlen, "%zu bytes is neither a key file of tlsloop ticket-keys (its "
                     "first line is '%s') nor a whole number of %d-byte keys", len, MAGIC,
                     TL_TICKET_KEY_LEN);
    } else if (len / TL_TICKET_KEY_LEN > max) {
        rc = FAIL(err, errlen, "%zu keys, at most %zu are allowed", len / TL_TICKET_KEY_LEN,
                     max);
    } else {
        /* nginx's layout: the first key encrypts, the others decrypt. */
        for (size_t i = 0; i < len / TL_TICKET_KEY_LEN; i++) {
            out[i].role = i == 0 ? TL_TICKET_KEY_CURRENT : TL_TICKET_KEY_PREVIOUS;
            out[i].created = 0;
            memcpy(out[i].key, (const uint8_t *)data + i * TL_TICKET_KEY_LEN, TL_TICKET_KEY_LEN);
        }
        *n = len / TL_TICKET_KEY_LEN;
        rc = 0;
    }
    for (size_t i = 0; rc == 0 && i < *n; i++)
        for (size_t j = i + 1; rc == 0 && j < *n; j++)
            if (memcmp(out[i].key, out[j].key, 16) == 0)
                rc = FAIL(err, errlen, "keys %zu and %zu have the same name (their first 16 "
                             "bytes); every key needs its own", i + 1, j + 1);
    if (rc != 0) {
        OPENSSL_cleanse(out, max * sizeof *out);
        *n = 0;
    }
    return rc;
}

size_t tl_ticket_keys_format(const tl_ticket_key_entry *keys, size_t n, char *out, size_t cap)
{
    size_t need = sizeof MAGIC + 96 + n * (2 * TL_TICKET_KEY_LEN + 32);
    if (cap < need)
        return 0;
    size_t w = (size_t)snprintf(out, cap, "%s: previous keys decrypt, the current key encrypts "
                                "and decrypts, the next key decrypts until it becomes current\n",
                                MAGIC);
    /* previous (oldest first), current, next: the order in which they were made */
    for (int role = 0; role < 3; role++) {
        for (size_t i = 0; i < n; i++) {
            if ((int)keys[i].role != role)
                continue;
            w += (size_t)snprintf(out + w, cap - w, "%s %" PRId64 " ", ROLE_NAMES[role],
                                  keys[i].created);
            for (int b = 0; b < TL_TICKET_KEY_LEN; b++)
                w += (size_t)snprintf(out + w, cap - w, "%02x", keys[i].key[b]);
            out[w++] = '\n';
        }
    }
    out[w] = 0;
    return w;
}

int tl_ticket_keys_make(tl_ticket_key_entry *k, tl_ticket_key_role role, int64_t now)
{
    k->role = role;
    k->created = now;
    return RAND_bytes(k->key, sizeof k->key) == 1 ? 0 : -1;
}

size_t tl_ticket_keys_rotate(tl_ticket_key_entry *keys, size_t n, size_t max,
                             unsigned keep_previous, int64_t now)
{
    /* A file without a next key (a binary one, say) gets one first: its current key stays
     * current until the next rotation, so no instance encrypts with a key another lacks. */
    size_t next = n, cur = n;
    for (size_t i = 0; i < n; i++) {
        if (keys[i].role == TL_TICKET_KEY_NEXT)
            next = i;
        if (keys[i].role == TL_TICKET_KEY_CURRENT)
            cur = i;
    }
    if (cur == n)
        return 0;
    tl_ticket_key_entry fresh;
    if (tl_ticket_keys_make(&fresh, TL_TICKET_KEY_NEXT, now) != 0)
        return 0;
    if (next < n) {
        keys[cur].role = TL_TICKET_KEY_PREVIOUS;
        keys[next].role = TL_TICKET_KEY_CURRENT;
    }
    /* Previous keys in order of age (the order of the array), the newest last: the one just
     * retired goes to the end. Keep the newest keep_previous. */
    tl_ticket_key_entry out[TLI_KEYS_MAX];
    size_t m = 0, nprev = 0;
    for (size_t i = 0; i < n; i++)
        nprev += keys[i].role == TL_TICKET_KEY_PREVIOUS && i != cur;
    size_t skip = nprev + (next < n) > keep_previous ? nprev + (next < n) - keep_previous : 0;
    for (size_t i = 0; i < n && m < TLI_KEYS_MAX; i++)
        if (keys[i].role == TL_TICKET_KEY_PREVIOUS && i != cur) {
            if (skip > 0)
                skip--;
            else
                out[m++] = keys[i];
        }
    if (next < n && keep_previous > 0 && m < TLI_KEYS_MAX)
        out[m++] = keys[cur];
    for (size_t i = 0; i < n && m < TLI_KEYS_MAX; i++)
        if (keys[i].role == TL_TICKET_KEY_CURRENT)
            out[m++] = keys[i];
    if (m < TLI_KEYS_MAX)
        out[m++] = fresh;
    OPENSSL_cleanse(&fresh, sizeof fresh);
    if (m > max) {
        OPENSSL_cleanse(out, sizeof out);
        return 0;
    }
    memcpy(keys, out, m * sizeof *out);
    OPENSSL_cleanse(out, sizeof out);
    return m;
}
