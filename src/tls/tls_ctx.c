/* tls_ctx.c - the shared TLS configuration: defaults, policy setters, OpenSSL callbacks. Its life
 * (errors, references, freezing) is tls_ctx_core.c; certificates tls_ctx_cert.c; the ticket key
 * ring tls_ctx_tickets.c; names chosen by SNI tls_ctx_sni.c. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/tls_ctx_int.h"
#include "tls/tli_tls.h"

/* Mozilla "intermediate", minus DHE: forward-secret AEAD suites only. */
static const char DEFAULT_TLS12_CIPHERS[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char DEFAULT_TLS13_SUITES[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char DEFAULT_GROUPS[] = "X25519:P-256:P-384";
static const char DEFAULT_SID_CTX[] = "tlsloop";

#define DEFAULT_CACHE_SIZE 20480
#define DEFAULT_LIFETIME_S 7200
#define DEFAULT_TICKET_KEYS 5

static int server_only(tl_tls_ctx *ctx, const char *what)
{
    if (ctx->role != TL_ROLE_SERVER)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "%s: only a server configuration has this setting", what);
    return 0;
}

/* ---- OpenSSL callbacks ------------------------------------------------------------------- */

/* Server: pick the configuration by SNI, then the pause point: stop before the ClientHello is
 * processed (the flight with the signature follows), unless the delegated task runs now. OpenSSL
 * calls the callback of the SSL's current SSL_CTX, so after a retry that followed a switch it is
 * the named configuration's, which has no names: the selection happens once. */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
    int taken = 0;
    if (tli_ctx_hello_check(ssl, alert) != 0 || (taken = tli_ctx_alpn_switch(ssl, arg, alert)) < 0 ||
        (!taken && tli_ctx_sni_switch(ssl, arg, alert) != 0))
        return SSL_CLIENT_HELLO_ERROR;
    tli_ssl_state *st = SSL_get_app_data(ssl);
    /* A session the owner looks up outside the process: pause until it is in our cache (or
     * known not to be); OpenSSL looks the ID up in the cache after this callback. */
    if (st && st->lookup && st->lookup_state == TLI_LOOKUP_NONE) {
        st->lookup_state = TLI_LOOKUP_DONE;
        if (tli_ctx_hello_wants_lookup(ssl, st)) {
            st->lookup_state = TLI_LOOKUP_WAIT;
            st->paused = true;
            return SSL_CLIENT_HELLO_RETRY;
        }
    }
    if (st && st->delegate && !st->in_task) {
        st->paused = true;
        return SSL_CLIENT_HELLO_RETRY;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* Server, with lookups on: keep a new TLS 1.2 session (a full handshake with a session ID) for
 * the owner's store, unless the client takes tickets (they resume it without a store). */
static int server_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    tli_ssl_state *st = SSL_get_app_data(ssl);
    unsigned id_len = 0;
    SSL_SESSION_get_id(sess, &id_len);
    if (!st || !st->lookup || st->hello_ticket || SSL_version(ssl) >= TLS1_3_VERSION || id_len == 0)
        return 0;
    SSL_SESSION_free(st->store_session);
    st->store_session = sess;
    return 1; /* the reference OpenSSL gave us is ours now */
}

/* Client pause point: stop before the server's chain is verified (its signature is checked right
 * after), unless the delegated task runs now. */
static int cert_verify_cb(X509_STORE_CTX *xctx, void *arg)
{
    (void)arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    tli_ssl_state *st = ssl ? SSL_get_app_data(ssl) : NULL;
    if (st && st->delegate && !st->in_task) {
        st->paused = true;
        return SSL_set_retry_verify(ssl);
    }
    return X509_verify_cert(xctx);
}

/* Client: keep our own copy of each new session (TLS 1.3 tickets arrive after the handshake). The
 * copy survives the connection and any change OpenSSL makes to the original. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    tli_ssl_state *st = SSL_get_app_data(ssl);
    if (!st)
        return 0;
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (!copy)
        return 0;
    SSL_SESSION_free(st->session);
    st->session = copy;
    return 0; /* we did not keep a reference to sess itself */
}

/* OpenSSL calls this with the current SSL_CTX's arg: after an SNI switch, the named
 * configuration's own list. A client that offers ALPN but none of our protocols gets a fatal
 * no_application_protocol alert (RFC 7301 section 3.2 says SHALL); one that offers no ALPN goes
 * on without. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    tl_tls_ctx *ctx = arg;
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (!ctx->alpn_wire)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_select_next_proto(&sel, &sel_len, ctx->alpn_wire, (unsigned)ctx->alpn_len, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* OpenSSL sends no_application_protocol */
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    /* OpenSSL calls the ticket callback and keeps the session cache of the SSL_CTX the SSL was
     * made with, also after SNI switched it: the keys must be that configuration's too, so one
     * ring serves every name (a session still resumes only on its own name: see sid_ctx). */
    tli_ssl_state *st = SSL_get_app_data(ssl);
    tl_tls_ctx *ctx = st && st->session_cfg ? st->session_cfg
                                            : SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!ctx || !ctx->ring)
        return enc ? -1 : 0;
    /* By now the version is agreed: TLS 1.3 tickets are single-use, so each one is replaced. */
    return tli_ticket_ring_crypt(ctx->ring, name, iv, cctx, hctx, enc,
                                 SSL_version(ssl) >= TLS1_3_VERSION);
}

/* ---- making one --------------------------------------------------------------------------- */

static int apply_defaults(tl_tls_ctx *ctx)
{
    SSL_CTX *s = ctx->ssl;
    /* OpenSSL 3 already refuses client-initiated renegotiation; NO_RENEGOTIATION refuses all. */
    SSL_CTX_set_options(s, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(s, SSL_MODE_NO_AUTO_CHAIN);
    /* Read whole TCP segments into the record buffer: fewer recv calls per record. */
    SSL_CTX_set_read_ahead(s, 1);
    ctx->groups = strdup(DEFAULT_GROUPS); /* kept for SNI (tls_ctx_sni.c) */
    if (!ctx->groups || !SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(s, DEFAULT_TLS12_CIPHERS) ||
        !SSL_CTX_set_ciphersuites(s, DEFAULT_TLS13_SUITES) ||
        !SSL_CTX_set1_groups_list(s, DEFAULT_GROUPS))
        return -1;
    SSL_CTX_set_app_data(s, ctx);
    SSL_CTX_set_max_early_data(s, 0);
    if (ctx->role == TL_ROLE_SERVER) {
        SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(s, DEFAULT_CACHE_SIZE);
        SSL_CTX_set_timeout(s, DEFAULT_LIFETIME_S);
        ctx->sid_len = sizeof DEFAULT_SID_CTX - 1;
        memcpy(ctx->sid, DEFAULT_SID_CTX, ctx->sid_len);
        if (!SSL_CTX_set_session_id_context(s, ctx->sid, ctx->sid_len))
            return -1;
        SSL_CTX_set_num_tickets(s, 2);
        SSL_CTX_set_client_hello_cb(s, client_hello_cb, ctx);
        SSL_CTX_sess_set_new_cb(s, server_new_session_cb);
        SSL_CTX_set_alpn_select_cb(s, alpn_select_cb, ctx);
        ctx->ring = tl_ticket_ring_new(DEFAULT_TICKET_KEYS);
        if (!ctx->ring || !SSL_CTX_set_tlsext_ticket_key_evp_cb(s, ticket_cb))
            return -1;
        SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
        ctx->verify = TL_VERIFY_NONE;
    } else {
        SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(s, new_session_cb);
        SSL_CTX_set_cert_verify_callback(s, cert_verify_cb, ctx);
        SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
        ctx->verify = TL_VERIFY_REQUIRE;
    }
    return 0;
}

tl_tls_ctx *tl_tls_ctx_new(tl_role role)
{
    return tl_tls_ctx_new_ex(role, NULL);
}

tl_tls_ctx *tl_tls_ctx_new_ex(tl_role role, const tl_tls_ctx_opts *opts)
{
    if (role != TL_ROLE_SERVER && role != TL_ROLE_CLIENT)
        return NULL;
    tl_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->role = role;
    atomic_init(&ctx->refs, 1);
    atomic_init(&ctx->frozen, false);
    pthread_mutex_init(&ctx->freeze_lock, NULL);
    ERR_clear_error();
    /* OpenSSL's own key derivation unless asked for ours (and ours can serve now): the SSL_CTX
     * then has no property query at all, as one made by SSL_CTX_new. */
    ctx->propq = tli_kdf_propq(opts ? opts->kdf : TL_KDF_OPENSSL, NULL);
    ctx->kdf = ctx->propq ? TL_KDF_TLSLOOP : TL_KDF_OPENSSL;
    ctx->ssl = SSL_CTX_new_ex(NULL, ctx->propq, TLS_method());
    if (!ctx->ssl || apply_defaults(ctx) != 0) {
        ERR_clear_error();
        tl_tls_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- policy setters ---------------------------------------------------------------------- */

int tl_tls_ctx_set_verify(tl_tls_ctx *ctx, tl_verify mode)
{
    if (tli_ctx_mutable(ctx, "set_verify") != 0)
        return -1;
    int flags;
    switch (mode) {
    case TL_VERIFY_NONE: flags = SSL_VERIFY_NONE; break;
    case TL_VERIFY_OPTIONAL:
        if (ctx->role == TL_ROLE_CLIENT)
            return tli_ctx_failf(ctx, TL_ERR_USAGE, "set_verify: a client verifies the server or not; "
                                           "optional verification is for servers");
        flags = SSL_VERIFY_PEER;
        break;
    case TL_VERIFY_REQUIRE:
        flags = SSL_VERIFY_PEER;
        if (ctx->role == TL_ROLE_SERVER)
            flags |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        break;
    default: return tli_ctx_failf(ctx, TL_ERR_USAGE, "set_verify: unknown mode %d", (int)mode);
    }
    SSL_CTX_set_verify(ctx->ssl, flags, NULL);
    ctx->verify = mode;
    return 0;
}

static int version_to_openssl(int v)
{
    switch (v) {
    case TL_TLS1_2: return TLS1_2_VERSION;
    case TL_TLS1_3: return TLS1_3_VERSION;
    default: return 0;
    }
}

int tl_tls_ctx_set_versions(tl_tls_ctx *ctx, int min_version, int max_version)
{
    if (tli_ctx_mutable(ctx, "set_versions") != 0)
        return -1;
    int lo = version_to_openssl(min_version), hi = version_to_openssl(max_version);
    if (!lo || !hi)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "set_versions: only TLS 1.2 (0x0303) and TLS 1.3 "
                                       "(0x0304) are supported, got 0x%04x..0x%04x",
                    (unsigned)min_version, (unsigned)max_version);
    if (lo > hi)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "set_versions: the lowest version is above the highest");
    SSL_CTX_set_min_proto_version(ctx->ssl, lo);
    SSL_CTX_set_max_proto_version(ctx->ssl, hi);
    return 0;
}

/* A TLS 1.2 list is acceptable when every suite it enables has ECDHE key exchange and an AEAD. */
static const char *weak_tls12_suite(SSL_CTX *s)
{
    STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(s);
    for (int i = 0; i < sk_SSL_CIPHER_num(sk); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(sk, i);
        int kx = SSL_CIPHER_get_kx_nid(c);
        if (kx == NID_kx_any)
            continue; /* a TLS 1.3 suite: always ephemeral and AEAD */
        if ((kx != NID_kx_ecdhe) || !SSL_CIPHER_is_aead(c))
            return SSL_CIPHER_get_name(c);
    }
    return NULL;
}

/* OpenSSL skips unknown names inside a TLS 1.3 list; we refuse them, naming the one at fault. */
static int check_tls13_suites(tl_tls_ctx *ctx, const char *list)
{
    static const char *const known[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                        "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256"};
    const char *p = list;
    if (!*p)
        return tli_ctx_failf(ctx, TL_ERR_CONFIG, "the TLS 1.3 suite list is empty");
    for (;;) {
        size_t len = strcspn(p, ":");
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok |= strlen(known[i]) == len && strncmp(known[i], p, len) == 0;
        if (!ok)
            return tli_ctx_failf(ctx, TL_ERR_CONFIG, "TLS 1.3 suite '%.*s' is not known (known: %s"
                                 ":TLS_AES_128_CCM_SHA256)", (int)len, p, DEFAULT_TLS13_SUITES);
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

int tl_tls_ctx_set_ciphers(tl_tls_ctx *ctx, const char *tls12_list, const char *tls13_suites)
{
    if (tli_ctx_mutable(ctx, "set_ciphers") != 0)
        return -1;
    if (tls12_list) {
        /* Try on a scratch context so a refused list leaves ours as it was. */
        SSL_CTX *probe = SSL_CTX_new_ex(NULL, ctx->propq, TLS_method());
        if (!probe)
            return tli_ctx_fail_ssl(ctx, TL_ERR_RESOURCE, "set_ciphers");
        if (!SSL_CTX_set_cipher_list(probe, tls12_list)) {
            SSL_CTX_free(probe);
            return tli_ctx_failf(ctx, TL_ERR_CONFIG, "TLS 1.2 cipher list '%s' names no usable cipher",
                        tls12_list);
        }
        const char *weak = weak_tls12_suite(probe);
        if (weak) {
            int r = tli_ctx_failf(ctx, TL_ERR_CONFIG,
                         "TLS 1.2 cipher list '%s' enables %s, which lacks forward secrecy or "
                         "AEAD; use ECDHE suites with GCM or CHACHA20-POLY1305",
                         tls12_list, weak);
            SSL_CTX_free(probe);
            return r;
        }
        SSL_CTX_free(probe);
    }
    if (tls13_suites && check_tls13_suites(ctx, tls13_suites) != 0)
        return -1;
    if (tls12_list && !SSL_CTX_set_cipher_list(ctx->ssl, tls12_list))
        return tli_ctx_fail_ssl(ctx, TL_ERR_CONFIG, "set_ciphers");
    if (tls13_suites && !SSL_CTX_set_ciphersuites(ctx->ssl, tls13_suites))
        return tli_ctx_fail_ssl(ctx, TL_ERR_CONFIG, "set_ciphers");
    return 0;
}

int tl_tls_ctx_set_groups(tl_tls_ctx *ctx, const char *groups)
{
    if (tli_ctx_mutable(ctx, "set_groups") != 0)
        return -1;
    char *copy = groups ? strdup(groups) : NULL;
    if (groups && !copy)
        return tli_ctx_failf(ctx, TL_ERR_RESOURCE, "set_groups: out of memory");
    /* OpenSSL replaces the list only when all of it parses: a refused one leaves ours as it was. */
    if (!groups || !SSL_CTX_set1_groups_list(ctx->ssl, groups)) {
        free(copy);
        return tli_ctx_failf(ctx, TL_ERR_CONFIG, "key-exchange group list '%s' is not valid "
                             "(e.g. %s)", groups ? groups : "(null)", DEFAULT_GROUPS);
    }
    free(ctx->groups);
    ctx->groups = copy;
    return 0;
}

int tl_tls_ctx_set_alpn(tl_tls_ctx *ctx, const char *protocols)
{
    if (tli_ctx_mutable(ctx, "set_alpn") != 0)
        return -1;
    size_t n = protocols ? strlen(protocols) : 0;
    if (n == 0)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "ALPN list is empty");
    /* Wire format: each protocol as a length byte and its bytes; at most as long as the text+1. */
    unsigned char *wire = malloc(n + 1);
    if (!wire)
        return tli_ctx_failf(ctx, TL_ERR_RESOURCE, "ALPN list: out of memory");
    size_t w = 0;
    const char *p = protocols;
    for (;;) { /* every element, also an empty one after a trailing comma */
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 || len > 255) {
            free(wire);
            return tli_ctx_failf(ctx, TL_ERR_USAGE, "ALPN list '%s': each protocol is 1 to 255 bytes, "
                                           "separated by commas", protocols);
        }
        wire[w++] = (unsigned char)len;
        memcpy(wire + w, p, len);
        w += len;
        if (!end)
            break;
        p = end + 1;
    }
    if (ctx->role == TL_ROLE_CLIENT && SSL_CTX_set_alpn_protos(ctx->ssl, wire, (unsigned)w) != 0) {
        free(wire);
        return tli_ctx_fail_ssl(ctx, TL_ERR_RESOURCE, "set_alpn");
    }
    free(ctx->alpn_wire);
    ctx->alpn_wire = wire;
    ctx->alpn_len = w;
    return 0;
}

int tl_tls_ctx_set_num_tickets(tl_tls_ctx *ctx, unsigned n)
{
    if (tli_ctx_mutable(ctx, "set_num_tickets") != 0 || server_only(ctx, "set_num_tickets") != 0)
        return -1;
    if (n > 16)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "set_num_tickets: %u tickets is too many (at most 16)", n);
    SSL_CTX_set_num_tickets(ctx->ssl, n);
    return 0;
}

int tl_tls_ctx_set_tickets(tl_tls_ctx *ctx, bool on)
{
    if (tli_ctx_mutable(ctx, "set_tickets") != 0)
        return -1;
    if (on)
        SSL_CTX_clear_options(ctx->ssl, SSL_OP_NO_TICKET);
    else
        SSL_CTX_set_options(ctx->ssl, SSL_OP_NO_TICKET);
    return 0;
}

int tl_tls_ctx_set_session_cache(tl_tls_ctx *ctx, size_t size, unsigned lifetime_s)
{
    if (tli_ctx_mutable(ctx, "set_session_cache") != 0 ||
        server_only(ctx, "set_session_cache") != 0)
        return -1;
    if (lifetime_s == 0 || lifetime_s > 7 * 24 * 3600)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "session lifetime %u s is out of range (1 s to 7 days)",
                    lifetime_s);
    SSL_CTX_set_session_cache_mode(ctx->ssl, size ? SSL_SESS_CACHE_SERVER : SSL_SESS_CACHE_OFF);
    SSL_CTX_sess_set_cache_size(ctx->ssl, (long)size);
    SSL_CTX_set_timeout(ctx->ssl, (long)lifetime_s);
    return 0;
}

int tl_tls_ctx_set_session_id_context(tl_tls_ctx *ctx, const void *sid, size_t len)
{
    if (tli_ctx_mutable(ctx, "set_session_id_context") != 0 ||
        server_only(ctx, "set_session_id_context") != 0)
        return -1;
    if (!sid || len == 0 || len > SSL_MAX_SID_CTX_LENGTH)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "session ID context must be 1 to %d bytes",
                    SSL_MAX_SID_CTX_LENGTH);
    if (!SSL_CTX_set_session_id_context(ctx->ssl, sid, (unsigned)len))
        return tli_ctx_fail_ssl(ctx, TL_ERR_USAGE, "set_session_id_context");
    memcpy(ctx->sid, sid, len);
    ctx->sid_len = (unsigned)len;
    ctx->sid_custom = true;
    return 0;
}

int tl_tls_ctx_set_ticket_ring(tl_tls_ctx *ctx, tl_ticket_ring *ring)
{
    if (tli_ctx_mutable(ctx, "set_ticket_ring") != 0 || server_only(ctx, "set_ticket_ring") != 0)
        return -1;
    if (!ring)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "set_ticket_ring: no ring given");
    tl_ticket_ring_ref(ring);
    tl_ticket_ring_free(ctx->ring);
    ctx->ring = ring;
    return 0;
}

tl_ticket_ring *tl_tls_ctx_ticket_ring(tl_tls_ctx *ctx)
{
    return ctx->ring;
}
