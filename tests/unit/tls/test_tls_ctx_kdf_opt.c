/*
 * test_tls_ctx_kdf_opt.c - what the opt-in to tlsloop's KDFs and HMAC (TL_KDF_TLSLOOP,
 * src/tls/tls_ctx_kdf.c) promises besides its outputs (test_tls_ctx_kdf.c, test_tls_ctx_kdf_hmac.c
 * and test_tls_ctx_kdf_handshakes.c have those):
 *   - a site's default properties still choose every other algorithm libssl fetches, with and
 *     without the opt-in (a provider of the test's own, "site", offers SHA2-256 and counts);
 *   - FIPS mode is asked of the library context for each configuration, not once;
 *   - default properties that rule our provider out are seen, and said;
 *   - libtlsloop.so may be dlclose'd: libcrypto's later fetches of our algorithms still work.
 */
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "support/tls_pair.h"
#include "test.h"
#include "tls/tls_ctx_int.h"   /* tli_kdf_propq, tli_kdf_hmacs_made, the configuration's propq */

static const tl_tls_ctx_opts opt_in = {.kdf = TL_KDF_TLSLOOP};

/* ---- "site": a provider whose SHA2-256 is OpenSSL's default one, counted ------------------- */

static size_t site_inits;
static EVP_MD *site_inner;      /* the default provider's SHA2-256 */

static void *site_newctx(void *provctx)
{
    (void)provctx;
    return EVP_MD_CTX_new();
}

static void site_freectx(void *c)
{
    EVP_MD_CTX_free(c);
}

static void *site_dupctx(void *c)
{
    EVP_MD_CTX *d = EVP_MD_CTX_new();
    if (d && !EVP_MD_CTX_copy_ex(d, c)) {
        EVP_MD_CTX_free(d);
        return NULL;
    }
    return d;
}

static int site_init(void *c, const OSSL_PARAM params[])
{
    (void)params;
    site_inits++;
    return EVP_DigestInit_ex(c, site_inner, NULL);
}

static int site_update(void *c, const unsigned char *in, size_t n)
{
    return EVP_DigestUpdate(c, in, n);
}

static int site_final(void *c, unsigned char *out, size_t *outl, size_t outsz)
{
    unsigned n = 0;
    if (outsz < 32 || !EVP_DigestFinal_ex(c, out, &n))
        return 0;
    *outl = n;
    return 1;
}

static int site_get_params(OSSL_PARAM params[])
{
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_DIGEST_PARAM_BLOCK_SIZE)) && !OSSL_PARAM_set_size_t(p, 64))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_DIGEST_PARAM_SIZE)) && !OSSL_PARAM_set_size_t(p, 32))
        return 0;
    return 1;
}

static const OSSL_PARAM *site_gettable(void *provctx)
{
    (void)provctx;
    static const OSSL_PARAM known[] = {OSSL_PARAM_size_t(OSSL_DIGEST_PARAM_BLOCK_SIZE, NULL),
                                       OSSL_PARAM_size_t(OSSL_DIGEST_PARAM_SIZE, NULL),
                                       OSSL_PARAM_END};
    return known;
}

static const OSSL_DISPATCH site_sha256[] = {
    {OSSL_FUNC_DIGEST_NEWCTX, (void (*)(void))site_newctx},
    {OSSL_FUNC_DIGEST_FREECTX, (void (*)(void))site_freectx},
    {OSSL_FUNC_DIGEST_DUPCTX, (void (*)(void))site_dupctx},
    {OSSL_FUNC_DIGEST_INIT, (void (*)(void))site_init},
    {OSSL_FUNC_DIGEST_UPDATE, (void (*)(void))site_update},
    {OSSL_FUNC_DIGEST_FINAL, (void (*)(void))site_final},
    {OSSL_FUNC_DIGEST_GET_PARAMS, (void (*)(void))site_get_params},
    {OSSL_FUNC_DIGEST_GETTABLE_PARAMS, (void (*)(void))site_gettable},
    {0, NULL},
};

static const OSSL_ALGORITHM site_digests[] = {
    {"SHA2-256:SHA-256:SHA256:2.16.840.1.101.3.4.2.1", "provider=site", site_sha256, NULL},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM *site_query(void *provctx, int op, int *no_store)
{
    (void)provctx;
    *no_store = 0;
    return op == OSSL_OP_DIGEST ? site_digests : NULL;
}

static const OSSL_DISPATCH site_functions[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))site_query},
    {0, NULL},
};

static int site_provider_init(const OSSL_CORE_HANDLE *h, const OSSL_DISPATCH *in,
                              const OSSL_DISPATCH **out, void **provctx)
{
    (void)in;
    *out = site_functions;
    *provctx = (void *)h;
    return 1;
}

/* The default provider stays loaded (an explicit load turns OpenSSL's fallback off), "site"
 * joins it, and the site's configuration prefers it. */
static void load_site(void)
{
    REQUIRE(OSSL_PROVIDER_load(NULL, "default"));
    REQUIRE((site_inner = EVP_MD_fetch(NULL, "SHA2-256", "provider=default")));
    REQUIRE(OSSL_PROVIDER_add_builtin(NULL, "site", site_provider_init));
    REQUIRE(OSSL_PROVIDER_load(NULL, "site"));
    REQUIRE(EVP_set_default_properties(NULL, "?provider=site"));
}

/* The provider a fetch as libssl makes it for this configuration gets: the default library
 * context (tlsloop's SSL_CTX are made in it) and the SSL_CTX's query. */
static const char *fetched_from(tl_tls_ctx *t, int kind, const char *name)
{
    const char *who = "(none)";
    if (kind == 'd') {
        EVP_MD *md = EVP_MD_fetch(NULL, name, t->propq);
        if (md)
            who = OSSL_PROVIDER_get0_name(EVP_MD_get0_provider(md));
        EVP_MD_free(md);
    } else {
        EVP_KDF *k = EVP_KDF_fetch(NULL, name, t->propq);
        if (k)
            who = OSSL_PROVIDER_get0_name(EVP_KDF_get0_provider(k));
        EVP_KDF_free(k);
    }
    return who;   /* provider names live as long as the provider */
}

/* ---- tests ------------------------------------------------------------------------------- */

TEST(site_properties_rule_other_algorithms)
{
    load_site();
    for (int opt = 0; opt < 2; opt++) {
        tp_kdf = opt ? TL_KDF_TLSLOOP : TL_KDF_OPENSSL;
        tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3);
        tl_tls_ctx *c = tp_client_ctx(TL_TLS1_3, TL_TLS1_3);
        CHECK(tl_tls_ctx_kdf(s) == tp_kdf && tl_tls_ctx_kdf(c) == tp_kdf);
        /* What libssl fetches for the transcript hash and the MACs: the site's choice. */
        CHECK_STR(fetched_from(s, 'd', "SHA256"), "site");
        CHECK_STR(fetched_from(c, 'd', "SHA2-256"), "site");
        /* The KDFs: ours only with the opt-in. */
        CHECK_STR(fetched_from(s, 'k', OSSL_KDF_NAME_TLS1_3_KDF), opt ? "tlsloop" : "default");
        size_t inits = site_inits, hmacs = tli_kdf_hmacs_made();
        tp_pair p;
        tp_pair_init(&p, c, s, NULL, NULL);
        CHECK(tp_handshake(&p.c, &p.s, 20) == 0);
        tp_pair_free(&p);
        /* libssl did hash with the site's SHA2-256, and MACed with ours only when asked. */
        CHECK(site_inits > inits || !fprintf(stderr, "  kdf %s: site's SHA2-256 unused\n",
                                              tl_kdf_name(tp_kdf)));
        CHECK(opt ? tli_kdf_hmacs_made() > hmacs : tli_kdf_hmacs_made() == 0);
        tl_tls_ctx_free(s);
        tl_tls_ctx_free(c);
    }
    CHECK(OSSL_PROVIDER_available(NULL, "tlsloop"));   /* loaded by the opt-in, not before */
}

TEST(default_loads_nothing)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tp_client_ctx(0, 0);
    tp_pair p;
    tp_pair_init(&p, c, s, NULL, NULL);
    CHECK(tp_handshake(&p.c, &p.s, 20) == 0);
    tp_pair_free(&p);
    CHECK(tl_tls_ctx_kdf(s) == TL_KDF_OPENSSL && s->propq == NULL && c->propq == NULL);
    CHECK(!OSSL_PROVIDER_available(NULL, "tlsloop"));
    CHECK(tli_kdf_hmacs_made() == 0);
    tl_tls_ctx_free(s);
    tl_tls_ctx_free(c);
}

/* After one configuration opted in, those that did not, and the application's own fetches
 * without a preference, still get OpenSSL's KDFs and HMAC. Run in a fresh process (this
 * program again, with KDF_OPT_FRESH set): which implementation a fetch without preference gets
 * depends on what libcrypto met first, and tp_init has already made it meet the default
 * provider here. Returns the exit code. */
static int fresh_others_alone(void)
{
    tl_tls_ctx *a = tl_tls_ctx_new_ex(TL_ROLE_SERVER, &opt_in);
    if (!a || tl_tls_ctx_kdf(a) != TL_KDF_TLSLOOP)
        return 3;
    EVP_KDF *prf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_PRF, NULL);
    EVP_KDF *t13 = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_3_KDF, NULL);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    const char *who[3] = {prf ? OSSL_PROVIDER_get0_name(EVP_KDF_get0_provider(prf)) : "none",
                          t13 ? OSSL_PROVIDER_get0_name(EVP_KDF_get0_provider(t13)) : "none",
                          mac ? OSSL_PROVIDER_get0_name(EVP_MAC_get0_provider(mac)) : "none"};
    int bad = 0;
    for (int i = 0; i < 3; i++)
        if (strcmp(who[i], "default")) {
            fprintf(stderr, "  without a preference, algorithm %d came from %s\n", i, who[i]);
            bad = 1;
        }
    EVP_KDF_free(prf);
    EVP_KDF_free(t13);
    EVP_MAC_free(mac);
    tp_init();
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tp_client_ctx(0, 0);
    size_t hmacs = tli_kdf_hmacs_made();
    tp_pair p;
    tp_pair_init(&p, c, s, NULL, NULL);
    bad |= tp_handshake(&p.c, &p.s, 20) != 0;
    tp_pair_free(&p);
    if (tli_kdf_hmacs_made() != hmacs) {   /* TLS 1.3's Finished MACs must be OpenSSL's */
        fprintf(stderr, "  a configuration without the opt-in used tlsloop's HMAC\n");
        bad = 1;
    }
    tl_tls_ctx_free(s);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(a);
    return bad;
}

TEST(opt_in_leaves_others_alone)
{
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        setenv("KDF_OPT_FRESH", "1", 1);
        execl("/proc/self/exe", "test_tls_ctx_kdf_opt", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* FIPS mode turned on after a configuration opted in: the next one stands aside, and the one
 * after FIPS mode is off again opts in again. */
TEST(fips_mode_is_asked_for_each_configuration)
{
    tl_tls_ctx *a = tl_tls_ctx_new_ex(TL_ROLE_CLIENT, &opt_in);
    REQUIRE(a);
    CHECK(tl_tls_ctx_kdf(a) == TL_KDF_TLSLOOP);
    CHECK(tl_kdf_unavailable(TL_KDF_TLSLOOP) == NULL);
    REQUIRE(EVP_default_properties_enable_fips(NULL, 1));
    const char *why = tl_kdf_unavailable(TL_KDF_TLSLOOP);
    CHECK(why && strstr(why, "FIPS mode is on"));
    CHECK(tli_kdf_propq(TL_KDF_TLSLOOP, NULL) == NULL);
    /* Without a FIPS provider installed, OpenSSL may not make an SSL_CTX at all now. */
    tl_tls_ctx *b = tl_tls_ctx_new_ex(TL_ROLE_CLIENT, &opt_in);
    if (b)
        CHECK(tl_tls_ctx_kdf(b) == TL_KDF_OPENSSL && b->propq == NULL);
    tl_tls_ctx_free(b);
    REQUIRE(EVP_default_properties_enable_fips(NULL, 0));
    CHECK(tl_kdf_unavailable(TL_KDF_TLSLOOP) == NULL);
    tl_tls_ctx *c = tl_tls_ctx_new_ex(TL_ROLE_CLIENT, &opt_in);
    REQUIRE(c);
    CHECK(tl_tls_ctx_kdf(c) == TL_KDF_TLSLOOP);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(a);
}

TEST(fips_mode_first_loads_nothing)
{
    REQUIRE(EVP_default_properties_enable_fips(NULL, 1));
    CHECK(tl_kdf_unavailable(TL_KDF_OPENSSL) == NULL);
    const char *why = tl_kdf_unavailable(TL_KDF_TLSLOOP);
    CHECK(why && strstr(why, "FIPS"));
    CHECK(!OSSL_PROVIDER_available(NULL, "tlsloop"));
}

/* A site that insists on the default provider for everything gets it, and is told. */
TEST(exclusive_default_properties_are_seen)
{
    REQUIRE(EVP_set_default_properties(NULL, "provider=default"));
    const char *why = tl_kdf_unavailable(TL_KDF_TLSLOOP);
    CHECK(why && strstr(why, "default properties"));
    tl_tls_ctx *t = tl_tls_ctx_new_ex(TL_ROLE_SERVER, &opt_in);
    REQUIRE(t);
    CHECK(tl_tls_ctx_kdf(t) == TL_KDF_OPENSSL && t->propq == NULL);
    tl_tls_ctx_free(t);
    CHECK(tl_kdf_parse("tlsloop", &(tl_kdf){0}) == 0 && tl_kdf_parse("TLSLOOP", &(tl_kdf){0}) < 0);
    CHECK_STR(tl_kdf_name(TL_KDF_TLSLOOP), "tlsloop");
    CHECK(tl_kdf_unavailable((tl_kdf)9) != NULL);
}

/* RFC 8448 section 3: the early secret, HKDF-Extract(0, 0) over SHA-256. */
static int early_secret_ok(const char *propq)
{
    static const unsigned char want[32] = {
        0x33, 0xad, 0x0a, 0x1c, 0x60, 0x7e, 0xc0, 0x3b, 0x09, 0xe6, 0xcd, 0x98, 0x93, 0x68, 0x0c, 0xe2,
        0x10, 0xad, 0xf3, 0x00, 0xaa, 0x1f, 0x26, 0x60, 0xe1, 0xb2, 0x2e, 0x10, 0xf1, 0x70, 0xf9, 0x2a};
    EVP_KDF *k = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_3_KDF, propq);
    EVP_KDF_CTX *kc = k ? EVP_KDF_CTX_new(k) : NULL;
    int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
    char digest[] = "SHA2-256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
                           OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    unsigned char got[32];
    int ok = kc && EVP_KDF_derive(kc, got, sizeof got, params) > 0 && !memcmp(got, want, 32) &&
             !strcmp(OSSL_PROVIDER_get0_name(EVP_KDF_get0_provider(k)), "tlsloop");
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(k);
    return ok;
}

/* The shared library two folders up from this test (build/tests/tls/../.. = build/). */
static void library_path(char *out, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(n > 0);
    exe[n] = '\0';
    snprintf(out, len, "%s/../../libtlsloop.so", dirname(exe));
}

/* OpenSSL keeps the provider (pointers into the library) after a dlclose: a later fetch and
 * derivation through libcrypto alone must still work (without -z nodelete it crashed). */
TEST(dlclose_leaves_the_provider_working)
{
    char path[PATH_MAX + 32];
    library_path(path, sizeof path);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        fprintf(stderr, "  dlopen %s: %s\n", path, dlerror());
    REQUIRE(h);
    tl_tls_ctx *(*make)(tl_role, const tl_tls_ctx_opts *) =
        (tl_tls_ctx * (*)(tl_role, const tl_tls_ctx_opts *)) dlsym(h, "tl_tls_ctx_new_ex");
    tl_kdf (*kdf_of)(const tl_tls_ctx *) = (tl_kdf(*)(const tl_tls_ctx *))dlsym(h, "tl_tls_ctx_kdf");
    void (*drop)(tl_tls_ctx *) = (void (*)(tl_tls_ctx *))dlsym(h, "tl_tls_ctx_free");
    REQUIRE(make && kdf_of && drop);
    tl_tls_ctx *t = make(TL_ROLE_CLIENT, &opt_in);
    REQUIRE(t);
    CHECK(kdf_of(t) == TL_KDF_TLSLOOP);
    drop(t);
    CHECK(early_secret_ok("?tlsloop.kdf=yes"));
    REQUIRE(dlclose(h) == 0);
    /* The library is gone as far as the program knows; libcrypto still has its provider. */
    CHECK(early_secret_ok("?tlsloop.kdf=yes"));
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t outl = 0;
    static const char data[] = "what do ya want for nothing?";   /* RFC 4231 test case 2 */
    CHECK(EVP_Q_mac(NULL, OSSL_MAC_NAME_HMAC, "?tlsloop.kdf=yes", "SHA256", NULL, "Jefe", 4,
                    (const unsigned char *)data, strlen(data), out, sizeof out, &outl) != NULL);
    CHECK(outl == 32 && out[0] == 0x5b && out[31] == 0x43);
}

int main(int argc, char **argv)
{
    if (getenv("KDF_OPT_FRESH"))
        return fresh_others_alone();
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(site_properties_rule_other_algorithms);
    RUN(default_loads_nothing);
    RUN(opt_in_leaves_others_alone);
    RUN(fips_mode_is_asked_for_each_configuration);
    RUN(fips_mode_first_loads_nothing);
    RUN(exclusive_default_properties_are_seen);
    RUN(dlclose_leaves_the_provider_working);
    TEST_MAIN_END();
}
