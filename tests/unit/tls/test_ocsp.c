/* test_ocsp.c - OCSP without sockets: responses made here with OpenSSL's API (signed by the test
 * CA, another CA, for another certificate, revoked, expired, not yet valid, without nextUpdate)
 * checked by tli_ocsp_verify; the request; the refresh and retry times; staple slots; and a
 * staple served by a server configuration's status callback to a client engine that asked for
 * it, checked with tl_ocsp_check_peer. */
#include <time.h>

#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <tlsloop/ocsp.h>

#include "support/tls_pair.h"
#include "test.h"
#include "tls/tli_ocsp.h"

static X509 *pem_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    REQUIRE(x);
    return x;
}

static EVP_PKEY *pem_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    REQUIRE(k);
    return k;
}

typedef struct resp_spec {
    const tl_certgen_pair *about;    /* the certificate the status is for (issued by tp.ca) */
    const tl_certgen_pair *signer;   /* who signs (default tp.ca) */
    int status;                      /* V_OCSP_CERTSTATUS_* */
    long this_off, next_off;         /* seconds from now */
    bool no_next;
    int resp_status;                 /* OCSP_RESPONSE_STATUS_* (default successful) */
} resp_spec;

/* A DER response (malloc'd) per spec. */
static uint8_t *make_resp(const resp_spec *s, size_t *len)
{
    X509 *ca = pem_cert(tp.ca.cert_pem), *leaf = pem_cert(s->about->cert_pem);
    const tl_certgen_pair *sg = s->signer ? s->signer : &tp.ca;
    X509 *scert = pem_cert(sg->cert_pem);
    EVP_PKEY *skey = pem_key(sg->key_pem);
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, leaf, ca);
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    time_t now = time(NULL);
    ASN1_TIME *thisupd = X509_time_adj_ex(NULL, 0, s->this_off, &now);
    ASN1_TIME *nextupd = s->no_next ? NULL : X509_time_adj_ex(NULL, 0, s->next_off, &now);
    ASN1_TIME *rev = s->status == V_OCSP_CERTSTATUS_REVOKED ? X509_time_adj_ex(NULL, 0, -7200, &now)
                                                            : NULL;
    REQUIRE(id && bs && thisupd);
    REQUIRE(OCSP_basic_add1_status(bs, id, s->status, s->status == V_OCSP_CERTSTATUS_REVOKED ? 1 : 0,
                                   rev, thisupd, nextupd));
    REQUIRE(OCSP_basic_sign(bs, scert, skey, EVP_sha256(), NULL, 0));
    OCSP_RESPONSE *r = OCSP_response_create(s->resp_status ? s->resp_status
                                                           : OCSP_RESPONSE_STATUS_SUCCESSFUL,
                                            s->resp_status ? NULL : bs);
    REQUIRE(r);
    unsigned char *buf = NULL;
    int n = i2d_OCSP_RESPONSE(r, &buf);
    REQUIRE(n > 0);
    uint8_t *out = malloc((size_t)n);
    memcpy(out, buf, (size_t)n);
    *len = (size_t)n;
    OPENSSL_free(buf);
    OCSP_RESPONSE_free(r);
    OCSP_BASICRESP_free(bs);
    OCSP_CERTID_free(id);
    ASN1_TIME_free(thisupd);
    ASN1_TIME_free(nextupd);
    ASN1_TIME_free(rev);
    EVP_PKEY_free(skey);
    X509_free(scert);
    X509_free(leaf);
    X509_free(ca);
    return out;
}

/* Verify a response for `leaf` (issued by tp.ca); returns the rc, fills info and why. */
static int verify_for(const uint8_t *der, size_t len, const tl_certgen_pair *leaf,
                      tl_ocsp_info *info, char *why, size_t whylen)
{
    X509 *x = pem_cert(leaf->cert_pem), *ca = pem_cert(tp.ca.cert_pem);
    STACK_OF(X509) *chain = sk_X509_new_null();
    sk_X509_push(chain, ca);
    int rc = tli_ocsp_verify(der, len, x, chain, (int64_t)time(NULL), info, why, whylen);
    if (rc != 0)
        fprintf(stderr, "  (verify: %s)\n", why);
    sk_X509_pop_free(chain, X509_free);
    X509_free(x);
    return rc;
}

TEST(good)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .status = V_OCSP_CERTSTATUS_GOOD,
                                          .this_off = -60, .next_off = 3600},
                             &len);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(verify_for(der, len, &tp.ecdsa, &info, why, sizeof why) == 0);
    CHECK(info.status == TL_OCSP_GOOD);
    int64_t now = (int64_t)time(NULL);
    CHECK(info.this_update >= now - 70 && info.this_update <= now - 50);
    CHECK(info.next_update >= now + 3590 && info.next_update <= now + 3610);
    CHECK(info.expires == info.next_update);
    CHECK_STR(tl_ocsp_status_name(info.status), "good");
    free(der);
}

TEST(revoked_is_reported_not_good)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .status = V_OCSP_CERTSTATUS_REVOKED,
                                          .this_off = -60, .next_off = 3600},
                             &len);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(verify_for(der, len, &tp.ecdsa, &info, why, sizeof why) == 0);
    CHECK(info.status == TL_OCSP_REVOKED);
    CHECK(info.revoked_at > 0 && info.revoked_at < (int64_t)time(NULL));
    CHECK(info.reason == 1);
    free(der);
}

TEST(response_for_another_certificate_refused)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.rsa, .status = V_OCSP_CERTSTATUS_GOOD,
                                          .this_off = -60, .next_off = 3600},
                             &len);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(verify_for(der, len, &tp.ecdsa, &info, why, sizeof why) == -1);
    CHECK_HAS(why, "not for this certificate");
    free(der);
}

TEST(expired_refused)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .status = V_OCSP_CERTSTATUS_GOOD,
                                          .this_off = -7200, .next_off = -10},
                             &len);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(verify_for(der, len, &tp.ecdsa, &info, why, sizeof why) == -1);
    CHECK_HAS(why, "expired");
    free(der);
}

TEST(not_yet_valid_refused)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .status = V_OCSP_CERTSTATUS_GOOD,
                                          .this_off = 3600, .next_off = 7200},
                             &len);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(verify_for(der, len, &tp.ecdsa, &info, why, sizeof why) == -1);
    CHECK_HAS(why, "not valid yet");
    free(der);
}

TEST(signed_by_another_ca_refused)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .signer = &tp.other_ca,
                                          .status = V_OCSP_CERTSTATUS_GOOD, .this_off = -60,
                                          .next_off = 3600},
                             &len);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(verify_for(der, len, &tp.ecdsa, &info, why, sizeof why) == -1);
    CHECK_HAS(why, "signature does not verify");
    free(der);
}

TEST(signed_by_the_leaf_itself_refused)
{
    /* A certificate the issuer signed but did not delegate OCSP to (no OCSPSigning usage). */
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .signer = &tp.rsa,
                                          .status = V_OCSP_CERTSTATUS_GOOD, .this_off = -60,
                                          .next_off = 3600},
                             &len);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(verify_for(der, len, &tp.ecdsa, &info, why, sizeof why) == -1);
    free(der);
}

TEST(unsuccessful_and_garbage_refused)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .status = V_OCSP_CERTSTATUS_GOOD,
                                          .next_off = 60,
                                          .resp_status = OCSP_RESPONSE_STATUS_TRYLATER},
                             &len);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(verify_for(der, len, &tp.ecdsa, &info, why, sizeof why) == -1);
    CHECK_HAS(why, "trylater");
    free(der);
    static const uint8_t junk[] = {0x30, 0x03, 0x0a, 0x01, 0x00, 0xff};
    CHECK(verify_for(junk, sizeof junk, &tp.ecdsa, &info, why, sizeof why) == -1);
    CHECK_HAS(why, "not an OCSP response");
    CHECK(verify_for(junk, 0, &tp.ecdsa, &info, why, sizeof why) == -1);
}

TEST(no_next_update_lasts_a_day)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .status = V_OCSP_CERTSTATUS_GOOD,
                                          .this_off = -60, .no_next = true},
                             &len);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(verify_for(der, len, &tp.ecdsa, &info, why, sizeof why) == 0);
    CHECK(info.next_update == 0);
    CHECK(info.expires == info.this_update + TL_OCSP_NO_NEXT_UPDATE_S);
    free(der);
}

TEST(issuer_missing_refused)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .status = V_OCSP_CERTSTATUS_GOOD,
                                          .this_off = -60, .next_off = 3600},
                             &len);
    X509 *x = pem_cert(tp.ecdsa.cert_pem);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(tli_ocsp_verify(der, len, x, NULL, (int64_t)time(NULL), &info, why, sizeof why) == -1);
    CHECK_HAS(why, "issuer");
    X509_free(x);
    free(der);
}

TEST(request_holds_the_certificate_id)
{
    X509 *x = pem_cert(tp.ecdsa.cert_pem), *ca = pem_cert(tp.ca.cert_pem);
    uint8_t *der = NULL;
    size_t len = 0;
    char why[200];
    REQUIRE(tli_ocsp_request(x, ca, &der, &len, why, sizeof why) == 0);
    const unsigned char *p = der;
    OCSP_REQUEST *req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
    REQUIRE(req);
    CHECK(OCSP_request_onereq_count(req) == 1);
    OCSP_CERTID *want = OCSP_cert_to_id(NULL, x, ca);
    CHECK(OCSP_id_cmp(OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, 0)), want) == 0);
    OCSP_CERTID_free(want);
    OCSP_REQUEST_free(req);
    /* No AIA, no TLS feature in the test certificates. */
    CHECK(tli_ocsp_url(x) == NULL);
    CHECK(!tli_ocsp_must_staple(x));
    free(der);
    X509_free(x);
    X509_free(ca);
}

TEST(refresh_and_retry_times)
{
    tl_ocsp_info i = {.this_update = 1000, .expires = 1000 + 7 * 86400};
    CHECK(tli_ocsp_refresh_at(&i) == 1000 + 7 * 86400 / 2);
    i.expires = 1060;   /* openssl ocsp -nmin 1 */
    CHECK(tli_ocsp_refresh_at(&i) == 1030);
    i.expires = 900;    /* nonsense: refresh now */
    CHECK(tli_ocsp_refresh_at(&i) == 1000);
    /* 10 s, doubled, capped at an hour; no response in hand. */
    CHECK(tli_ocsp_retry_after(1, 0, 0) == 10);
    CHECK(tli_ocsp_retry_after(2, 0, 0) == 20);
    CHECK(tli_ocsp_retry_after(4, 0, 0) == 80);
    CHECK(tli_ocsp_retry_after(30, 0, 0) == 3600);
    /* With one that expires soon: before it expires, at least 1 s. */
    CHECK(tli_ocsp_retry_after(10, 100, 140) == 20);
    CHECK(tli_ocsp_retry_after(1, 100, 101) == 1);
    CHECK(tli_ocsp_retry_after(1, 100, 1000) == 10);
}

TEST(staple_slot)
{
    tli_staple *s = tli_staple_new();
    REQUIRE(s);
    int64_t exp = 0;
    CHECK(!tli_staple_valid(s, 100, &exp));
    static const uint8_t a[] = {1, 2, 3};
    CHECK(tli_staple_set(s, a, sizeof a, 200) == 0);
    CHECK(tli_staple_valid(s, 100, &exp) && exp == 200);
    CHECK(!tli_staple_valid(s, 200, NULL));   /* never past its expiry */
    tli_staple_clear(s);
    CHECK(!tli_staple_valid(s, 100, NULL));
    tli_staple_free(tli_staple_ref(s));
    tli_staple_free(s);
}

/* A handshake through memory; returns the client's check of the staple. */
static int shake_and_check(tl_tls_ctx *sctx, tli_staple *st, bool ask, tl_ocsp_info *info,
                           char *why, size_t whylen)
{
    if (st) {
        REQUIRE(tli_tls_ctx_leaf_count(sctx) == 1);
        REQUIRE(tli_tls_ctx_set_staple(sctx, 0, st) == 0);
    }
    tl_tls_ctx *cctx = tp_client_ctx(0, 0);
    REQUIRE(cctx);
    if (ask)
        REQUIRE(tl_tls_ctx_request_ocsp(cctx, true) == 0);
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, NULL, NULL);
    REQUIRE(tp_handshake(&p.c, &p.s, 50) == 0);
    int rc = tl_ocsp_check_peer(p.c.e, info, why, whylen);
    tp_pair_free(&p);
    tl_tls_ctx_free(cctx);
    return rc;
}

TEST(stapled_through_the_handshake)
{
    for (int v = 0; v < 2; v++) {
        int ver = v ? TL_TLS1_3 : TL_TLS1_2;
        size_t len;
        uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .status = V_OCSP_CERTSTATUS_GOOD,
                                              .this_off = -60, .next_off = 3600},
                                 &len);
        tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, ver, ver);
        tli_staple *st = tli_staple_new();
        REQUIRE(sctx && st);
        REQUIRE(tli_staple_set(st, der, len, (int64_t)time(NULL) + 3600) == 0);
        tl_ocsp_info info;
        char why[300] = "";
        int rc = shake_and_check(sctx, st, true, &info, why, sizeof why);
        if (rc != 0)
            fprintf(stderr, "  TLS %s: %s\n", v ? "1.3" : "1.2", why);
        CHECK(rc == 0);
        CHECK(info.status == TL_OCSP_GOOD);
        tli_staple_free(st);
        tl_tls_ctx_free(sctx);
        free(der);
    }
}

TEST(no_staple_is_reported)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    tli_staple *st = tli_staple_new();
    REQUIRE(sctx && st);
    tl_ocsp_info info;
    char why[300] = "";
    /* An empty slot: the handshake goes on without a staple. */
    CHECK(shake_and_check(sctx, st, true, &info, why, sizeof why) == -1);
    CHECK_HAS(why, "stapled no OCSP response");
    tli_staple_free(st);
    tl_tls_ctx_free(sctx);
}

TEST(expired_staple_not_served)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .status = V_OCSP_CERTSTATUS_GOOD,
                                          .this_off = -60, .next_off = 3600},
                             &len);
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    tli_staple *st = tli_staple_new();
    REQUIRE(sctx && st);
    /* The slot says it ran out a second ago: the callback must not send it. */
    REQUIRE(tli_staple_set(st, der, len, (int64_t)time(NULL) - 1) == 0);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(shake_and_check(sctx, st, true, &info, why, sizeof why) == -1);
    CHECK_HAS(why, "stapled no OCSP response");
    tli_staple_free(st);
    tl_tls_ctx_free(sctx);
    free(der);
}

TEST(revoked_staple_fails_the_client_check)
{
    size_t len;
    uint8_t *der = make_resp(&(resp_spec){.about = &tp.ecdsa, .status = V_OCSP_CERTSTATUS_REVOKED,
                                          .this_off = -60, .next_off = 3600},
                             &len);
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    tli_staple *st = tli_staple_new();
    REQUIRE(sctx && st);
    REQUIRE(tli_staple_set(st, der, len, (int64_t)time(NULL) + 3600) == 0);
    tl_ocsp_info info;
    char why[300] = "";
    CHECK(shake_and_check(sctx, st, true, &info, why, sizeof why) == -1);
    CHECK(info.status == TL_OCSP_REVOKED);
    CHECK_HAS(why, "revoked");
    tli_staple_free(st);
    tl_tls_ctx_free(sctx);
    free(der);
}

TEST(request_ocsp_only_on_clients)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    REQUIRE(sctx);
    CHECK(tl_tls_ctx_request_ocsp(sctx, true) == -1);
    CHECK_HAS(tl_tls_ctx_error(sctx), "only a client");
    tl_tls_ctx_free(sctx);
}

int main(int argc, char **argv)
{
    tp_init();
    TEST_MAIN_BEGIN(argc, argv);
    RUN(good);
    RUN(revoked_is_reported_not_good);
    RUN(response_for_another_certificate_refused);
    RUN(expired_refused);
    RUN(not_yet_valid_refused);
    RUN(signed_by_another_ca_refused);
    RUN(signed_by_the_leaf_itself_refused);
    RUN(unsuccessful_and_garbage_refused);
    RUN(no_next_update_lasts_a_day);
    RUN(issuer_missing_refused);
    RUN(request_holds_the_certificate_id);
    RUN(refresh_and_retry_times);
    RUN(staple_slot);
    RUN(stapled_through_the_handshake);
    RUN(no_staple_is_reported);
    RUN(expired_staple_not_served);
    RUN(revoked_staple_fails_the_client_check);
    RUN(request_ocsp_only_on_clients);
    TEST_MAIN_END();
}
