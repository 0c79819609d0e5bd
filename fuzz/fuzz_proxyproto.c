/* fuzz_proxyproto.c - the PROXY protocol parser on arbitrary bytes, each broken invariant an
 * abort (the list: fuzz/README.md, "What is checked"). */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tlsloop/proxyproto.h>

#define FAIL(...)                                                                               \
    do {                                                                                        \
        fprintf(stderr, "INVARIANT FAILED: " __VA_ARGS__);                                      \
        fprintf(stderr, "\n");                                                                  \
        abort();                                                                                \
    } while (0)

static void same_addrs(const tl_proxy_info *a, const tl_proxy_info *b)
{
    size_t n = a->family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (a->family != b->family || memcmp(&a->src, &b->src, n) != 0 ||
        memcmp(&a->dst, &b->dst, n) != 0)
        FAIL("addresses changed after writing and parsing again");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tl_proxy_info info;
    ssize_t r = tl_proxy_parse(data, size, &info);
    if (r != TL_PROXY_INCOMPLETE && r != TL_PROXY_INVALID && (r <= 0 || (size_t)r > size))
        FAIL("answer %zd for %zu bytes", r, size);
    if (r <= 0)
        return 0;

    /* What follows the header does not change it. */
    uint8_t *more = malloc(size + 8);
    memcpy(more, data, size);
    memcpy(more + size, "GARBAGE!", 8);
    tl_proxy_info again;
    if (tl_proxy_parse(more, size + 8, &again) != r)
        FAIL("the length changed with bytes after the header");
    free(more);

    for (size_t i = 0; i < (size_t)r && i < 512; i++)
        if (tl_proxy_parse(data, i, &again) != TL_PROXY_INCOMPLETE)
            FAIL("a %zu-byte prefix of a %zd-byte header was not incomplete", i, r);

    if (!info.local) {
        if (info.family != AF_INET && info.family != AF_INET6)
            FAIL("addresses of family %d", info.family);
        char v1[TL_PROXY_V1_MAX + 1];
        ssize_t n = tl_proxy_write_v1(v1, sizeof v1, (struct sockaddr *)&info.src,
                                      (struct sockaddr *)&info.dst);
        if (n <= 0 || tl_proxy_parse(v1, (size_t)n, &again) != n)
            FAIL("the v1 header we wrote does not parse");
        same_addrs(&info, &again);
        uint8_t v2[128];
        n = tl_proxy_write_v2(v2, sizeof v2, (struct sockaddr *)&info.src,
                              (struct sockaddr *)&info.dst, NULL, 0, true);
        if (n <= 0 || tl_proxy_parse(v2, (size_t)n, &again) != n)
            FAIL("the v2 header we wrote does not parse");
        same_addrs(&info, &again);
    }
    /* Every TLV present can be found, and lies inside the input. (Types 0x21-0x25 exist only as
     * sub-TLVs of TL_PP2_SSL, where tl_proxy_tlv looks for them: at the top level they are
     * unknown TLVs.) */
    for (size_t off = 0; info.version == 2 && off + 3 <= info.tlvs_len;) {
        const uint8_t *t = info.tlvs + off, *v;
        size_t len = ((size_t)t[1] << 8) | t[2], l;
        bool sub_type = t[0] >= TL_PP2_SSL_VERSION && t[0] <= TL_PP2_SSL_KEY_ALG;
        if (!sub_type && (!tl_proxy_tlv(&info, t[0], &v, &l) || v < data || v + l > data + r))
            FAIL("TLV of type 0x%02x not found or outside the header", t[0]);
        off += 3 + len;
    }
    return 0;
}
