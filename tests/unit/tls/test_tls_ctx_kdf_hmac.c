/*
 * test_tls_ctx_kdf_hmac.c - tlsloop's HMAC (the TL_KDF_TLSLOOP opt-in) against OpenSSL's default
 * provider: scripts of EVP_MAC calls run on both, their traces compared, for random keys, messages
 * and digests and for the edge cases; one RFC 4231 value (support/kdf_compare.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "support/kdf_compare.h"
#include "test.h"

/* ---- HMAC --------------------------------------------------------------------------------- */

/* A script of EVP_MAC calls, run on a context from either provider; every call's verdict and
 * every output go into a trace, and the two traces must be equal. */
typedef enum { M_END, M_SET, M_INIT, M_UPDATE, M_FINAL, M_DUP_FINAL, M_SIZES } mac_op_kind;

typedef struct {
    mac_op_kind op;
    const OSSL_PARAM *params;    /* M_SET, M_INIT */
    const unsigned char *data;   /* M_INIT: the key (NULL: none); M_UPDATE: the data */
    size_t len;
} mac_op;

typedef struct {
    unsigned char b[4096];
    size_t n;
} trace;

static void trace_add(trace *t, const void *p, size_t n)
{
    REQUIRE(t->n + n <= sizeof t->b);
    memcpy(t->b + t->n, p, n);
    t->n += n;
}

static void trace_final(trace *t, EVP_MAC_CTX *m)
{
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t outl = 0;
    unsigned char ok = EVP_MAC_final(m, out, &outl, sizeof out) > 0;
    trace_add(t, &ok, 1);
    if (ok)
        trace_add(t, out, outl);
}

static void run_mac(const char *props, const mac_op *ops, trace *t)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, props);
    REQUIRE(mac);
    EVP_MAC_CTX *m = EVP_MAC_CTX_new(mac);
    REQUIRE(m);
    t->n = 0;
    for (; ops->op != M_END; ops++) {
        unsigned char ok = 1;
        switch (ops->op) {
        case M_SET:
            ok = EVP_MAC_CTX_set_params(m, ops->params) > 0;
            break;
        case M_INIT:
            ok = EVP_MAC_init(m, ops->data, ops->len, ops->params) > 0;
            break;
        case M_UPDATE:
            ok = EVP_MAC_update(m, ops->data, ops->len) > 0;
            break;
        case M_FINAL:
            trace_final(t, m);
            break;
        case M_DUP_FINAL: {   /* a copy finishes here; the original goes on */
            EVP_MAC_CTX *d = EVP_MAC_CTX_dup(m);
            REQUIRE(d);
            trace_final(t, d);
            EVP_MAC_CTX_free(d);
            break;
        }
        case M_SIZES: {
            size_t sz[2] = {EVP_MAC_CTX_get_mac_size(m), EVP_MAC_CTX_get_block_size(m)};
            trace_add(t, sz, sizeof sz);
            break;
        }
        case M_END:
            break;
        }
        trace_add(t, &ok, 1);
        ERR_clear_error();
    }
    EVP_MAC_CTX_free(m);
    EVP_MAC_free(mac);
}

static int same_mac(const mac_op *ops, const char *what)
{
    static trace a, b;
    run_mac(kc_ours, ops, &a);
    run_mac(kc_theirs, ops, &b);
    if (a.n == b.n && memcmp(a.b, b.b, a.n) == 0)
        return 1;
    size_t i = 0;
    while (i < a.n && i < b.n && a.b[i] == b.b[i])
        i++;
    fprintf(stderr, "  HMAC %s: traces differ at byte %zu (lengths %zu, %zu)\n", what, i, a.n,
            b.n);
    return 0;
}

TEST(provider_serves_hmac)
{
    kc_opt_in();
    EVP_MAC *m = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, kc_propq());
    REQUIRE(m);
    CHECK_STR(OSSL_PROVIDER_get0_name(EVP_MAC_get0_provider(m)), "tlsloop");
    EVP_MAC_free(m);
    /* One-shot, as libssl's TLS 1.3 Finished does it: RFC 4231 test case 2. */
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t outl = 0;
    static const char data[] = "what do ya want for nothing?";
    CHECK(EVP_Q_mac(NULL, OSSL_MAC_NAME_HMAC, kc_propq(), "SHA256", NULL, "Jefe", 4,
                    (const unsigned char *)data, strlen(data), out, sizeof out, &outl) != NULL);
    static const unsigned char want[32] = {
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75,
        0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec,
        0x38, 0x43};
    CHECK(outl == 32 && memcmp(out, want, 32) == 0);
}

/* Random keys (around the block sizes) and messages in random pieces, in the ways libssl keys a
 * context: EVP_Q_mac's (digest, then properties, then init with the key), the ticket callback's
 * (digest and key in one set_params, no init), a key reused (init without one), a copy finished
 * in the middle; and digests handed on to OpenSSL. */
TEST(hmac_matches_openssl)
{
    kc_opt_in();
    static unsigned char key[200], msg[3000];
    RAND_bytes(key, sizeof key);
    RAND_bytes(msg, sizeof msg);
    static const size_t klens[] = {0, 1, 20, 31, 32, 33, 48, 63, 64, 65, 100, 127, 128, 129, 200};
    char propq[] = "?provider=tlsloop";
    int bad = 0;
    for (int iter = 0; iter < 2000 && bad < 5; iter++) {
        bool other = iter % 10 == 9;
        char *digest = (char *)(other ? kc_other_digests[kc_rnd(3)] : kc_digests[kc_rnd(4)]);
        size_t klen = klens[kc_rnd(15)];
        int style = kc_rnd(4);
        OSSL_PARAM dig[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                            OSSL_PARAM_construct_end()};
        OSSL_PARAM prop[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_PROPERTIES, propq, 0),
                             OSSL_PARAM_construct_end()};
        OSSL_PARAM dig_key[] = {dig[0],
                                OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, klen),
                                OSSL_PARAM_construct_end()};
        mac_op ops[40];
        int n = 0;
        if (style == 1) {
            ops[n++] = (mac_op){M_SET, dig_key, NULL, 0};
        } else {
            ops[n++] = (mac_op){M_SET, dig, NULL, 0};
            ops[n++] = (mac_op){M_SET, prop, NULL, 0};
            ops[n++] = (mac_op){M_INIT, prop, key, klen};
        }
        ops[n++] = (mac_op){M_SIZES, NULL, NULL, 0};
        for (int round = 0; round < (style == 2 ? 3 : 1); round++) {
            if (round > 0)
                ops[n++] = (mac_op){M_INIT, NULL, NULL, 0};   /* the same key again */
            unsigned pieces = kc_rnd(6);
            for (unsigned i = 0; i < pieces; i++) {
                ops[n++] = (mac_op){M_UPDATE, NULL, msg + kc_rnd(1000),
                                    kc_rnd(4) ? kc_rnd(300) : kc_rnd(2000)};
                if (style == 3 && i == pieces / 2)
                    ops[n++] = (mac_op){M_DUP_FINAL, NULL, NULL, 0};
            }
            ops[n++] = (mac_op){M_FINAL, NULL, NULL, 0};
        }
        ops[n] = (mac_op){M_END, NULL, NULL, 0};
        char what[96];
        snprintf(what, sizeof what, "%s, key %zu, style %d", digest, klen, style);
        if (!same_mac(ops, what))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

/* Calls out of order and odd parameters: the same verdicts (and outputs) as OpenSSL's. */
TEST(hmac_edges_match_openssl)
{
    kc_opt_in();
    static unsigned char key[32] = {7}, data[100] = {9}, hdr[13] = {0x17, 3, 3, 0, 64};
    char sha256[] = "SHA2-256", sha384[] = "SHA384", sha1[] = "SHA1", nosuch[] = "NOSUCH";
    char p_nosuch[] = "provider=nosuch", p_default[] = "provider=default", p_empty[] = "";
    size_t tls_size = 64 + 32 + 16;
    int one = 1;
#define P_DIG(d) OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, d, 0)
#define P_PROP(q) OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_PROPERTIES, q, 0)
#define P_KEY(k, n) OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k, n)
#define P_END OSSL_PARAM_construct_end()
    OSSL_PARAM d256[] = {P_DIG(sha256), P_END}, d384[] = {P_DIG(sha384), P_END},
               d1[] = {P_DIG(sha1), P_END}, dno[] = {P_DIG(nosuch), P_END},
               k32[] = {P_KEY(key, 32), P_END}, knull[] = {P_KEY(NULL, 0), P_END},
               d256_nosuch[] = {P_DIG(sha256), P_PROP(p_nosuch), P_END},
               d256_default[] = {P_DIG(sha256), P_PROP(p_default), P_END},
               d256_empty[] = {P_DIG(sha256), P_PROP(p_empty), P_END},
               kint[] = {OSSL_PARAM_construct_int(OSSL_MAC_PARAM_KEY, &one), P_END},
               oneshot[] = {OSSL_PARAM_construct_int(OSSL_MAC_PARAM_DIGEST_ONESHOT, &one), P_END},
               tls[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_TLS_DATA_SIZE, &tls_size),
                        P_END};
#define SET(p) {M_SET, p, NULL, 0}
#define INIT(klen) {M_INIT, NULL, key, klen}
#define INIT_AGAIN {M_INIT, NULL, NULL, 0}
#define UPD {M_UPDATE, NULL, data, sizeof data}
#define FIN {M_FINAL, NULL, NULL, 0}
#define SIZES {M_SIZES, NULL, NULL, 0}
#define END {M_END, NULL, NULL, 0}
    struct {
        const char *name;
        mac_op ops[8];
    } cases[] = {
        {"update and final before init", {UPD, FIN, SIZES, END}},
        {"init without a digest", {INIT(32), UPD, FIN, END}},
        {"init without a key", {SET(d256), INIT_AGAIN, UPD, FIN, END}},
        {"key without a digest, digest later", {SET(k32), SET(d256), INIT_AGAIN,
                                                UPD, FIN, END}},
        {"unknown digest", {SET(dno), INIT(32), UPD, FIN, END}},
        {"digest with a provider that has none", {SET(d256_nosuch), INIT(32),
                                                  UPD, FIN, END}},
        {"digest from the default provider", {SET(d256_default), INIT(32),
                                              UPD, FIN, SIZES, END}},
        {"digest with empty properties", {SET(d256_empty), INIT(32), UPD, FIN,
                                          END}},
        {"digest changed after the key", {SET(d256), INIT(32), SET(d384),
                                          SIZES, INIT_AGAIN, UPD, FIN, END}},
        {"digest changed, then a key", {SET(d256), INIT(32), SET(d384),
                                        INIT(20), SIZES, UPD, FIN, END}},
        {"a key parameter without data", {SET(d256), INIT(32), SET(knull),
                                          UPD, FIN, END}},
        {"a key parameter of another type", {SET(d256), SET(kint), UPD, FIN, END}},
        {"handed on: SHA-1, then back to SHA-256", {SET(d1), INIT(32), UPD,
                                                    FIN, SET(d256), INIT(32),
                                                    FIN, END}},
        {"handed on: digest flags", {SET(d256), INIT(32), SET(oneshot), UPD,
                                     FIN, END}},
        /* The constant-time check of a TLS 1.2 CBC record (header, then record and MAC). */
        {"tls-data-size", {SET(d256), INIT(32), SET(tls),
                           {M_UPDATE, NULL, hdr, 13}, UPD, FIN, END}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(same_mac(cases[i].ops, cases[i].name));
    /* Two differences, both refusals where OpenSSL goes on. A second final without init:
     * OpenSSL's HMAC finishes its finished hash state again and gives bytes that mean nothing.
     * A digest not ours set while a message is open (OpenSSL keeps it for the next key): the
     * message cannot be handed over. */
    mac_op twice[] = {SET(d384), INIT(32), UPD, FIN, FIN, END};
    trace t;
    run_mac(kc_ours, twice, &t);
    REQUIRE(t.n == 3 + (1 + 48 + 1) + (1 + 1));
    CHECK(t.b[t.n - 2] == 0);
    mac_op mid[] = {SET(d256), INIT(32), UPD, SET(d1), END};
    run_mac(kc_ours, mid, &t);
    REQUIRE(t.n == 4);
    CHECK(t.b[2] == 1 && t.b[3] == 0);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(provider_serves_hmac);
    RUN(hmac_matches_openssl);
    RUN(hmac_edges_match_openssl);
    TEST_MAIN_END();
}
