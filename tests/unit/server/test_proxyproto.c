/*
 * test_proxyproto.c - PROXY protocol v1/v2: the spec's examples, every prefix incomplete, strict
 * rejection of ambiguous or malformed headers, TLVs, CRC32C, and writing then parsing back; the
 * client certificate CN that PP2_SUBTYPE_SSL_CN carries (exact UTF-8, or nothing).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include <openssl/x509.h>

#include <tlsloop/proxyproto.h>

#include "proxy/proxy_int.h"
#include "test.h"

static void check_in(const struct sockaddr_storage *ss, const char *ip, unsigned port)
{
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    char buf[INET_ADDRSTRLEN];
    CHECK_EQ_INT(s->sin_family, AF_INET);
    CHECK_STR(inet_ntop(AF_INET, &s->sin_addr, buf, sizeof buf), ip);
    CHECK_EQ_INT(ntohs(s->sin_port), port);
}

/* Every proper prefix of a valid header asks for more; the whole parses to its length. */
static void check_prefixes(const void *h, size_t n)
{
    tl_proxy_info info;
    for (size_t i = 0; i < n; i++)
        if (tl_proxy_parse(h, i, &info) != TL_PROXY_INCOMPLETE) {
            fprintf(stderr, "  prefix of %zu bytes (of %zu) was not incomplete\n", i, n);
            test_failures_++;
            return;
        }
    CHECK_EQ_INT(tl_proxy_parse(h, n, &info), n);
}

TEST(v1_tcp4_and_stream_after)
{
    const char h[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    tl_proxy_info info;
    ssize_t n = tl_proxy_parse(h, sizeof h - 1, &info);
    CHECK_EQ_INT(n, strstr(h, "\r\n") + 2 - h);
    CHECK_EQ_INT(info.version, 1);
    CHECK(!info.local);
    check_in(&info.src, "192.168.0.1", 56324);
    check_in(&info.dst, "192.168.0.11", 443);
    check_prefixes(h, (size_t)n);
}

TEST(v1_tcp6_and_unknown)
{
    const char h6[] = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    tl_proxy_info info;
    CHECK_EQ_INT(tl_proxy_parse(h6, sizeof h6 - 1, &info), sizeof h6 - 1);
    CHECK_EQ_INT(info.family, AF_INET6);
    CHECK_EQ_INT(ntohs(((struct sockaddr_in6 *)&info.src)->sin6_port), 65535);
    const char u[] = "PROXY UNKNOWN ffff:f...f:ffff 10.0.0.1 1 2\r\n";
    CHECK_EQ_INT(tl_proxy_parse(u, sizeof u - 1, &info), sizeof u - 1);
    CHECK(info.local);
    const char u2[] = "PROXY UNKNOWN\r\n";
    CHECK_EQ_INT(tl_proxy_parse(u2, sizeof u2 - 1, &info), sizeof u2 - 1);
}

TEST(v1_strict)
{
    static const char *const bad[] = {
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",     /* bare LF */
        "PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",  /* two spaces */
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",  /* trailing space */
        "PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",  /* leading zero */
        "PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",   /* port range */
        "PROXY TCP4 ::1 ::1 1 2\r\n",                          /* family mismatch */
        "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
        "PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n",
        "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",                    /* too few */
        "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",                /* too many */
        "PROXY TCP4 1.2.3.4\x01 1.2.3.4 1 2\r\n",              /* control byte */
        "PROXX TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
        "GET / HTTP/1.1\r\n",
        "\x16\x03\x01\x00\x05",                                /* a TLS ClientHello */
    };
    tl_proxy_info info;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ssize_t r = tl_proxy_parse(bad[i], strlen(bad[i]), &info);
        if (r != TL_PROXY_INVALID) {
            fprintf(stderr, "  accepted or waited for: %s (%zd)\n", bad[i], r);
            test_failures_++;
        }
    }
    /* 107 bytes and no CRLF: invalid, not "wait for more". */
    char longline[120];
    memcpy(longline, "PROXY UNKNOWN ", 14);
    memset(longline + 14, 'x', sizeof longline - 14);
    CHECK_EQ_INT(tl_proxy_parse(longline, TL_PROXY_V1_MAX, &info), TL_PROXY_INVALID);
    CHECK_EQ_INT(tl_proxy_parse(longline, TL_PROXY_V1_MAX - 1, &info), TL_PROXY_INCOMPLETE);
}

TEST(v2_roundtrip_with_tlvs_and_crc)
{
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(40000)};
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(443)};
    inet_pton(AF_INET, "203.0.113.7", &src.sin_addr);
    inet_pton(AF_INET, "198.51.100.1", &dst.sin_addr);
    /* The SSL TLV: client flags (1 = SSL), verify 0, then sub-TLVs. */
    uint8_t ssl[5 + 3 + 7 + 3 + 22] = {0x01, 0, 0, 0, 0, TL_PP2_SSL_VERSION, 0, 7};
    memcpy(ssl + 8, "TLSv1.3", 7);
    ssl[15] = TL_PP2_SSL_CIPHER;
    ssl[16] = 0;
    ssl[17] = 22;
    memcpy(ssl + 18, "TLS_AES_128_GCM_SHA256", 22);
    tl_proxy_tlv_out tlvs[] = {{TL_PP2_ALPN, "h2", 2},
                               {TL_PP2_AUTHORITY, "example.test", 12},
                               {TL_PP2_SSL, ssl, sizeof ssl}};
    uint8_t buf[512];
    ssize_t n = tl_proxy_write_v2(buf, sizeof buf, (struct sockaddr *)&src,
                                  (struct sockaddr *)&dst, tlvs, 3, true);
    REQUIRE(n > 0);
    check_prefixes(buf, (size_t)n);
    tl_proxy_info info;
    CHECK_EQ_INT(tl_proxy_parse(buf, (size_t)n, &info), n);
    CHECK_EQ_INT(info.version, 2);
    check_in(&info.src, "203.0.113.7", 40000);
    check_in(&info.dst, "198.51.100.1", 443);
    const uint8_t *v;
    size_t l;
    CHECK(tl_proxy_tlv(&info, TL_PP2_AUTHORITY, &v, &l) && l == 12 &&
          memcmp(v, "example.test", 12) == 0);
    CHECK(tl_proxy_tlv(&info, TL_PP2_ALPN, &v, &l) && l == 2 && memcmp(v, "h2", 2) == 0);
    CHECK(tl_proxy_tlv(&info, TL_PP2_SSL_VERSION, &v, &l) && l == 7 &&
          memcmp(v, "TLSv1.3", 7) == 0);
    CHECK(tl_proxy_tlv(&info, TL_PP2_SSL_CIPHER, &v, &l) && l == 22);
    CHECK(!tl_proxy_tlv(&info, TL_PP2_SSL_CN, &v, &l));
    /* One flipped bit anywhere fails the checksum (or the framing), except in the CRC TLV's own
     * type byte: that makes it an unknown TLV, and the checksum is optional in the spec. */
    for (ssize_t i = 12; i < n; i++) {
        if (i == n - 7)
            continue;
        buf[i] ^= 0x10;
        ssize_t r = tl_proxy_parse(buf, (size_t)n, &info);
        if (r == n) {
            fprintf(stderr, "  bit flip at %zd accepted\n", i);
            test_failures_++;
        }
        buf[i] ^= 0x10;
    }
}

TEST(v2_ipv6_local_and_malformed)
{
    struct sockaddr_in6 src = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
    struct sockaddr_in6 dst = {.sin6_family = AF_INET6, .sin6_port = htons(2)};
    inet_pton(AF_INET6, "2001:db8::7", &src.sin6_addr);
    inet_pton(AF_INET6, "2001:db8::8", &dst.sin6_addr);
    uint8_t buf[256];
    tl_proxy_info info;
    ssize_t n = tl_proxy_write_v2(buf, sizeof buf, (struct sockaddr *)&src,
                                  (struct sockaddr *)&dst, NULL, 0, false);
    CHECK_EQ_INT(n, 16 + 36);
    CHECK_EQ_INT(tl_proxy_parse(buf, (size_t)n, &info), n);
    CHECK_EQ_INT(info.family, AF_INET6);
    CHECK(memcmp(&((struct sockaddr_in6 *)&info.src)->sin6_addr, &src.sin6_addr, 16) == 0);
    /* LOCAL (a health check): no addresses to use. */
    n = tl_proxy_write_v2(buf, sizeof buf, NULL, NULL, NULL, 0, false);
    CHECK_EQ_INT(n, 16);
    CHECK_EQ_INT(tl_proxy_parse(buf, (size_t)n, &info), 16);
    CHECK(info.local);
    /* Malformed: version 3, command 2, family 5, length shorter than the addresses, a TLV that
     * runs past the end, a datagram peer. */
    n = tl_proxy_write_v2(buf, sizeof buf, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                          NULL, 0, false);
    uint8_t m[256];
    struct { int at; uint8_t v; } cases[] = {{12, 0x31}, {12, 0x22}, {13, 0x51}, {15, 20},
                                             {13, 0x22}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(m, buf, (size_t)n);
        m[cases[i].at] = cases[i].v;
        CHECK_EQ_INT(tl_proxy_parse(m, (size_t)n, &info), TL_PROXY_INVALID);
    }
    memcpy(m, buf, (size_t)n);
    m[15] = 36 + 3; /* a 3-byte TLV header claiming 255 bytes */
    m[n] = TL_PP2_NOOP;
    m[n + 1] = 0;
    m[n + 2] = 255;
    CHECK_EQ_INT(tl_proxy_parse(m, (size_t)n + 3, &info), TL_PROXY_INVALID);
}

TEST(v1_write_and_parse_back)
{
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(5000)};
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(8443)};
    inet_pton(AF_INET, "127.0.0.9", &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    char buf[TL_PROXY_V1_MAX + 1];
    ssize_t n = tl_proxy_write_v1(buf, sizeof buf, (struct sockaddr *)&src,
                                  (struct sockaddr *)&dst);
    REQUIRE(n > 0);
    CHECK(memcmp(buf, "PROXY TCP4 127.0.0.9 127.0.0.1 5000 8443\r\n", (size_t)n) == 0);
    tl_proxy_info info;
    CHECK_EQ_INT(tl_proxy_parse(buf, (size_t)n, &info), n);
    check_in(&info.src, "127.0.0.9", 5000);
    CHECK_EQ_INT(tl_proxy_write_v1(buf, 10, (struct sockaddr *)&src, (struct sockaddr *)&dst),
                 -1);
    CHECK_EQ_INT(tl_proxy_write_v1(buf, sizeof buf, NULL, NULL), 15);
}

struct cn_entry {
    int type;          /* V_ASN1_UTF8STRING, ... */
    const char *v;
    int len;
};

/* A certificate whose subject has these CN entries. */
static X509 *cert_with_cns(const struct cn_entry *e, size_t n)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Test", -1, -1, 0);
    for (size_t i = 0; i < n; i++) {
        ASN1_STRING *str = ASN1_STRING_type_new(e[i].type);
        ASN1_STRING_set(str, e[i].v, e[i].len);
        X509_NAME_ENTRY *ent = X509_NAME_ENTRY_create_by_NID(NULL, NID_commonName, e[i].type,
                                                             str->data, str->length);
        X509_NAME_add_entry(name, ent, -1, 0);
        X509_NAME_ENTRY_free(ent);
        ASN1_STRING_free(str);
    }
    return x;
}

TEST(cert_cn_is_exact_utf8_or_nothing)
{
    char out[64];
    const struct {
        struct cn_entry e[2];
        size_t n;
        int want;              /* length, 0 none, -1 refused */
        const char *text;
    } cases[] = {
        {{{V_ASN1_UTF8STRING, "\xC3\xA9", 2}}, 1, 2, "\xC3\xA9"},          /* é */
        {{{V_ASN1_UTF8STRING, "C3A9", 4}}, 1, 4, "C3A9"},                  /* not the same */
        {{{V_ASN1_BMPSTRING, "\x00\xE9", 2}}, 1, 2, "\xC3\xA9"},           /* é as UCS-2 */
        {{{V_ASN1_PRINTABLESTRING, "alice", 5}}, 1, 5, "alice"},
        {{{V_ASN1_UTF8STRING, "first", 5}, {V_ASN1_UTF8STRING, "last", 4}}, 2, 4, "last"},
        {{{V_ASN1_UTF8STRING, "a\0b", 3}}, 1, -1, ""},                     /* NUL */
        {{{V_ASN1_UTF8STRING, "\xC3", 1}}, 1, -1, ""},                     /* cut short */
        {{{V_ASN1_UTF8STRING, "\xC0\xAF", 2}}, 1, -1, ""},                 /* overlong '/' */
        {{{V_ASN1_UTF8STRING, "\xED\xA0\x80", 3}}, 1, -1, ""},             /* a surrogate */
        {{{V_ASN1_BMPSTRING, "\xD8\x00", 2}}, 1, -1, ""},                 /* a lone surrogate */
        {{{V_ASN1_UTF8STRING, "0123456789012345678901234567890123456789012345678901234567890123456789",
           70}}, 1, -1, ""},                                               /* longer than out */
        {{{0, NULL, 0}}, 0, 0, ""},                                        /* no CN */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        X509 *x = cert_with_cns(cases[i].e, cases[i].n);
        int got = tli_cert_cn_utf8(x, out, sizeof out);
        if (got != cases[i].want || strcmp(out, cases[i].text) != 0) {
            fprintf(stderr, "  case %zu: got %d '%s', want %d '%s'\n", i, got, out,
                    cases[i].want, cases[i].text);
            test_failures_++;
        }
        X509_free(x);
    }
    CHECK_EQ_INT(tli_cert_cn_utf8(NULL, out, sizeof out), 0);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(v1_tcp4_and_stream_after);
    RUN(v1_tcp6_and_unknown);
    RUN(v1_strict);
    RUN(v2_roundtrip_with_tlvs_and_crc);
    RUN(v2_ipv6_local_and_malformed);
    RUN(v1_write_and_parse_back);
    RUN(cert_cn_is_exact_utf8_or_nothing);
    TEST_MAIN_END();
}
