/* tests/support/kdf_compare.c - see kdf_compare.h. */
#include <stdio.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "kdf_compare.h"
#include "tls/tls_ctx_int.h"   /* tli_kdf_propq */
#include "tls_pair.h"

const char *const kc_ours = "provider=tlsloop";
const char *const kc_theirs = "provider=default";

const char *const kc_digests[4] = {"SHA2-256", "SHA256", "sha-384", "SHA2-384"};
const char *const kc_other_digests[3] = {"SHA2-512", "SHA1", "SHA2-224"};

unsigned kc_rnd(unsigned n)
{
    unsigned v;
    RAND_bytes((unsigned char *)&v, sizeof v);
    return n ? v % n : 0;
}

const char *kc_propq(void)
{
    return tli_kdf_propq(TL_KDF_TLSLOOP, NULL);
}

void kc_opt_in(void)
{
    tp_kdf = TL_KDF_TLSLOOP;
    tl_tls_ctx *ctx = tl_tls_ctx_new_ex(TL_ROLE_SERVER, &(tl_tls_ctx_opts){.kdf = TL_KDF_TLSLOOP});
    if (!ctx || tl_tls_ctx_kdf(ctx) != TL_KDF_TLSLOOP || !kc_propq()) {
        fprintf(stderr, "  kc_opt_in: the configuration did not opt in to tlsloop's KDFs\n");
        fflush(stderr);
        _exit(1);
    }
    tl_tls_ctx_free(ctx);
}
