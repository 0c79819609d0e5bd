/* fuzz_sstore.c - the session store's reply parsers (memcached's text protocol and Redis's RESP,
 * src/server/server_sstore_proto.c) and the opening of sealed entries on arbitrary bytes, each
 * broken invariant an abort (fuzz/README.md, "What is checked"). The input's first byte picks the
 * protocol; the rest is what the store sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/sstore_int.h"

#define FAIL(...)                                                                               \
    do {                                                                                        \
        fprintf(stderr, "INVARIANT FAILED: " __VA_ARGS__);                                      \
        fprintf(stderr, "\n");                                                                  \
        abort();                                                                                \
    } while (0)

static tl_ticket_ring *ring;
static tli_sealer *sealer;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ring) {
        ring = tl_ticket_ring_new(2);
        sealer = tli_sealer_new();
        if (!ring || !sealer)
            FAIL("setup");
    }
    if (size < 1)
        return 0;
    tli_sstore_kind kind = data[0] & 1 ? TLI_SSTORE_REDIS : TLI_SSTORE_MEMCACHED;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    size_t used = 0;
    /* Replies one after another, as the client reads them. */
    while (used < n) {
        tli_reply r;
        ssize_t k = tli_sstore_parse_reply(kind, p + used, n - used, &r);
        if (k < -1 || (k > 0 && (size_t)k > n - used))
            FAIL("answer %zd for %zu bytes", k, n - used);
        if (k <= 0)
            break;
        if (r.kind > TLI_REPLY_ERROR)
            FAIL("kind %d", (int)r.kind);
        if (r.kind == TLI_REPLY_VALUE &&
            (r.data < p + used || r.data + r.len > p + used + (size_t)k || r.len > TLI_SSTORE_VALUE_MAX))
            FAIL("a value outside its reply");
        /* Every prefix is incomplete, and what follows changes nothing. */
        for (size_t i = 0; i < (size_t)k && i < 256; i++) {
            tli_reply again;
            if (tli_sstore_parse_reply(kind, p + used, i, &again) != 0)
                FAIL("a %zu-byte prefix of a %zd-byte reply was not incomplete", i, k);
        }
        uint8_t *more = malloc((size_t)k + 4);
        memcpy(more, p + used, (size_t)k);
        memcpy(more + k, "+OK\r", 4);
        tli_reply again;
        if (tli_sstore_parse_reply(kind, more, (size_t)k + 4, &again) != k)
            FAIL("the length changed with bytes after the reply");
        free(more);
        if (r.kind == TLI_REPLY_VALUE) {
            uint8_t *der;
            size_t der_len;
            /* Nobody sealed it with our keys: it must not open. */
            if (tli_open(sealer, ring, (const uint8_t *)"id", 2, r.data, r.len, &der, &der_len) == 0)
                FAIL("an entry made of fuzz opened");
        }
        used += (size_t)k;
    }
    return 0;
}
