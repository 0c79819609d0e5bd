/*
 * src/tls/tls_ctx_kdf.c - TLS 1.2's PRF, TLS 1.3's key schedule and HMAC for libssl, from a provider
 * of our own (tls_ctx.h, "Key derivation"). This file is the provider: its registration and
 * dispatch, loading it per configuration and the FIPS check; the algorithms are
 * tls_ctx_kdf_tls.c (TLS1-PRF, TLS13-KDF) and tls_ctx_kdf_hmac.c, their hashing tls_ctx_kdf_core.c.
 *
 * Why: OpenSSL 3.0's libssl derives every TLS secret through EVP_KDF ("TLS1-PRF", "TLS13-KDF"),
 * and the default provider's implementations build, duplicate and free EVP_MAC and EVP_MD
 * contexts for each call: fetches, allocations and cleanses around a dozen hash blocks of real
 * work. Counted by callgrind on `tlsloop serve`: a resumed TLS 1.2 connection spent 134,000 of its
 * 440,000 instructions in its three PRF calls. Here an HMAC key is two hash states with the pads
 * absorbed once per call; each HMAC after that copies the two states (plain structs) and hashes
 * only its message.
 *
 * The same goes for HMAC, which libssl uses for TLS 1.3's Finished messages, PSK binders and
 * session tickets ("HMAC" below).
 *
 * How: a built-in provider named "tlsloop" offers the three algorithms with the properties
 * "provider=tlsloop,tlsloop.kdf=yes". It is an opt-in (TL_KDF_TLSLOOP in tl_tls_ctx_opts; the
 * default is OpenSSL's own): only then is it loaded, and that configuration's SSL_CTX is made
 * with the property query "?tlsloop.kdf=yes" (tli_kdf_propq). No other provider's algorithm has
 * that property, so for everything else libssl fetches the query is neutral and the site's
 * default_properties decide as they would without us. The two digests TLS 1.2 and 1.3 suites
 * use, SHA-256 and SHA-384, are computed here; any other digest is handed, with the same
 * parameters, to the implementation that would have served it otherwise ("provider!=tlsloop"),
 * and so is a digest that comes with properties. The parameters, their meaning and what is
 * refused are the default provider's (EVP_KDF-TLS1_PRF(7), EVP_KDF-TLS13_KDF(7), and OpenSSL
 * 3.0's code where the pages are silent: the PRF's 1024-byte seed limit, TLS13-KDF clearing its
 * data on every call with parameters); tests/unit/tls/test_tls_ctx_kdf.c compares outputs and
 * verdicts with it, tests/unit/tls/test_tls_ctx_kdf_vectors.c checks RFC 5869, 8448 and 4231.
 *
 * Standing aside: each configuration that opts in asks again (tli_kdf_propq) and gets OpenSSL's
 * when FIPS mode is on in the default library context (EVP_default_properties_is_fips_enabled:
 * FIPS's KDFs and HMAC are the approved ones), or when the default properties would not select
 * ours anyway; tl_tls_ctx_kdf and tl_kdf_unavailable say so.
 *
 * Unloading: OpenSSL keeps pointers into the library (provider_init, the dispatch tables) until
 * the process ends, so libtlsloop.so is linked with -z nodelete and a dlclose leaves it mapped.
 *
 * Why the deprecated SHA256_* and SHA384_* functions: tls_ctx_kdf_core.c.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/provider.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "tls/tls_ctx_int.h"
#include "tls/tls_ctx_kdf_int.h"

/* ---- The provider ---- */

static const OSSL_ALGORITHM *provider_query(void *provctx, int operation, int *no_store)
{
    (void)provctx;
    *no_store = 0;
    return operation == OSSL_OP_KDF ? tli_kdf_tls_algorithms
         : operation == OSSL_OP_MAC ? tli_kdf_hmac_algorithms : NULL;
}

static const OSSL_DISPATCH provider_functions[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))provider_query},
    {0, NULL},
};

static int provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                         const OSSL_DISPATCH **out, void **provctx)
{
    (void)in;
    *out = provider_functions;
    *provctx = (void *)handle;
    return 1;
}

/* ---- Loading and choosing ---- */

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static bool loaded;              /* the provider is registered and active */
static OSSL_PROVIDER *provider;  /* our reference, dropped in OpenSSL's own cleanup */

static void unload(void)
{
    OSSL_PROVIDER_unload(provider);
    provider = NULL;
}

/* Once, on the first configuration that opts in. The library is linked with -z nodelete
 * (Makefile): OpenSSL keeps pointers to provider_init and our dispatch tables for the rest of
 * the process, so a dlclose must not unmap them. */
static void load(void)
{
    /* A fetch that states no preference between two implementations takes the one libcrypto
     * listed first, and it lists them as it first meets them. Have it meet OpenSSL's three
     * now, before ours exist: everyone who does not ask for ours (configurations without the
     * opt-in, the application's own fetches) keeps getting OpenSSL's. */
    EVP_KDF_free(EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_PRF, NULL));
    EVP_KDF_free(EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_3_KDF, NULL));
    EVP_MAC_free(EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL));
    /* try_load with fallbacks kept: OpenSSL still activates the default provider when nothing
     * else was loaded explicitly, as it would have without us. */
    if (OSSL_PROVIDER_add_builtin(NULL, PROVIDER_NAME, provider_init) &&
        (provider = OSSL_PROVIDER_try_load(NULL, PROVIDER_NAME, 1))) {
        if (OPENSSL_atexit(unload))
            loaded = true;
        else
            unload();
    }
    ERR_clear_error();
}

static bool is_ours(const OSSL_PROVIDER *p)
{
    return p && strcmp(OSSL_PROVIDER_get0_name(p), PROVIDER_NAME) == 0;
}

/* Whether a fetch with our query, under the default properties in force now, comes to us. */
static bool fetches_ours(void)
{
    EVP_KDF *prf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_PRF, PROPQ);
    EVP_KDF *t13 = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_3_KDF, PROPQ);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, PROPQ);
    bool ours = prf && t13 && mac && is_ours(EVP_KDF_get0_provider(prf)) &&
                is_ours(EVP_KDF_get0_provider(t13)) && is_ours(EVP_MAC_get0_provider(mac));
    EVP_KDF_free(prf);
    EVP_KDF_free(t13);
    EVP_MAC_free(mac);
    ERR_clear_error();
    return ours;
}

const char *tli_kdf_propq(tl_kdf want, const char **why)
{
    if (why)
        *why = NULL;
    if (want != TL_KDF_TLSLOOP)
        return NULL;
    const char *no = NULL;
    if (!EVP_default_properties_is_fips_enabled(NULL))
        pthread_once(&load_once, load);
    /* Asked each time, of the library context the configurations use: FIPS mode may be turned
     * on (or off) at any time, by the configuration file or the application. */
    if (EVP_default_properties_is_fips_enabled(NULL))
        no = "FIPS mode is on (default properties fips=yes): OpenSSL's approved TLS1-PRF, "
             "TLS13-KDF and HMAC are used instead of tlsloop's";
    else if (!loaded)
        no = "tlsloop's key derivation provider could not be loaded: OpenSSL's TLS1-PRF, "
             "TLS13-KDF and HMAC are used";
    else if (!fetches_ours())
        no = "the default properties (openssl.cnf or EVP_set_default_properties) select "
             "another provider's TLS1-PRF, TLS13-KDF or HMAC: OpenSSL's are used";
    if (why)
        *why = no;
    return no ? NULL : PROPQ;
}

const char *tl_kdf_unavailable(tl_kdf want)
{
    const char *why;
    if (want != TL_KDF_OPENSSL && want != TL_KDF_TLSLOOP)
        return "unknown key derivation (expected TL_KDF_OPENSSL or TL_KDF_TLSLOOP)";
    tli_kdf_propq(want, &why);
    return why;
}

const char *tl_kdf_name(tl_kdf kdf)
{
    return kdf == TL_KDF_TLSLOOP ? "tlsloop" : "openssl";
}

int tl_kdf_parse(const char *s, tl_kdf *out)
{
    if (s && !strcmp(s, "openssl"))
        *out = TL_KDF_OPENSSL;
    else if (s && !strcmp(s, "tlsloop"))
        *out = TL_KDF_TLSLOOP;
    else
        return -1;
    return 0;
}
