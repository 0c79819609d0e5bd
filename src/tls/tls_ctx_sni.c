/* tls_ctx_sni.c - SNI: named configurations attached to a default one, chosen per connection in
 * the ClientHello callback by the server_name the client sends ("Names (SNI)" in
 * tlsloop/tls_ctx.h; why there, and what is copied: docs/design.md, decision 13). */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "tls/tls_ctx_int.h"
#include "tls/tli_tls.h"

#define MAX_NAME 253 /* a DNS name's text, without the trailing dot */

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

/* A host name: dot-separated labels of 1 to 63 letters, digits, '-' or '_', at most 253 in all,
 * optionally after "*." (a wildcard for exactly one more label). Writes the lower-case name
 * without "*." to out. */
static bool parse_name(const char *name, char out[MAX_NAME + 1], bool *wildcard)
{
    *wildcard = strncmp(name, "*.", 2) == 0;
    const char *p = *wildcard ? name + 2 : name;
    size_t n = strlen(p), label = 0;
    if (n == 0 || n + (*wildcard ? 2 : 0) > MAX_NAME)
        return false;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63)
                return false;
            label = 0;
        } else if ((c >= '0' && c <= '9') || (lower(c) >= 'a' && lower(c) <= 'z') || c == '-' ||
                   c == '_') {
            label++;
        } else {
            return false;
        }
        out[i] = (char)lower(c);
    }
    return true;
}

static bool name_is(const tli_sni_name *e, bool wildcard, const unsigned char *s, size_t len)
{
    if (e->wildcard != wildcard || e->len != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (lower(s[i]) != (unsigned char)e->name[i])
            return false;
    return true;
}

/* The named configuration for a server name (len bytes, any case), or NULL. An exact name wins;
 * then "*.rest" for "label.rest". */
static tl_tls_ctx *find(const tl_tls_ctx *d, const unsigned char *s, size_t len)
{
    if (len == 0 || len > MAX_NAME)
        return NULL;
    for (size_t i = 0; i < d->n_names; i++)
        if (name_is(&d->names[i], false, s, len))
            return d->names[i].ctx;
    const unsigned char *dot = memchr(s, '.', len);
    if (!dot || dot == s)
        return NULL;
    size_t rest = len - (size_t)(dot + 1 - s);
    for (size_t i = 0; i < d->n_names; i++)
        if (name_is(&d->names[i], true, dot + 1, rest))
            return d->names[i].ctx;
    return NULL;
}

tl_tls_ctx *tl_tls_ctx_select(tl_tls_ctx *dflt, const char *sni)
{
    tl_tls_ctx *named = dflt && sni ? find(dflt, (const unsigned char *)sni, strlen(sni)) : NULL;
    return named ? named : dflt;
}

/* Freeze every named configuration (under dflt's freeze lock). 0, or -1 with dflt's error set. */
static int sni_freeze(tl_tls_ctx *dflt)
{
    for (size_t i = 0; i < dflt->n_names; i++) {
        tli_sni_name *e = &dflt->names[i];
        if (tli_tls_ctx_freeze(e->ctx, NULL, 0) != 0)
            return tli_ctx_failf(dflt, e->ctx->err_kind, "name '%s%s': %s",
                                 e->wildcard ? "*." : "", e->name, e->ctx->err);
    }
    return 0;
}

/* Drop the references to the named configurations. */
static void sni_free(tl_tls_ctx *dflt)
{
    for (size_t i = 0; i < dflt->n_names; i++) {
        free(dflt->names[i].name);
        tl_tls_ctx_free(dflt->names[i].ctx);
    }
    free(dflt->names);
    dflt->names = NULL;
    dflt->n_names = 0;
}

/* Frozen and freed with the default configuration (tls_ctx_core.c calls up through these). */
static const tli_ctx_part_ops names_ops = {.freeze = sni_freeze, .free = sni_free};

/* The session ID context of a configuration attached under `name`: SHA-256 of the name, so each
 * name's sessions are its own, and stay resumable across reloads that attach it again. */
static int derive_sid(const char *name, bool wildcard, unsigned char sid[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(md, "tlsloop sni\0", 12) &&
             EVP_DigestUpdate(md, wildcard ? "*." : "", wildcard ? 2 : 0) &&
             EVP_DigestUpdate(md, name, strlen(name)) && EVP_DigestFinal_ex(md, sid, NULL);
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

int tl_tls_ctx_add_name(tl_tls_ctx *dflt, const char *name, tl_tls_ctx *named)
{
    if (tli_ctx_mutable(dflt, "add_name") != 0)
        return -1;
    if (!name || !named)
        return tli_ctx_failf(dflt, TL_ERR_USAGE, "add_name: a name and a configuration are "
                             "required");
    if (dflt->role != TL_ROLE_SERVER || named->role != TL_ROLE_SERVER)
        return tli_ctx_failf(dflt, TL_ERR_USAGE, "add_name '%s': only server configurations are "
                             "chosen by SNI; both must be made with TL_ROLE_SERVER", name);
    if (named == dflt)
        return tli_ctx_failf(dflt, TL_ERR_USAGE, "add_name '%s': a configuration cannot be a "
                             "named configuration of itself", name);
    if (dflt->is_named)
        return tli_ctx_failf(dflt, TL_ERR_USAGE, "add_name '%s': this configuration is itself "
                             "attached under a name; attach names to the default one", name);
    if (named->n_names > 0)
        return tli_ctx_failf(dflt, TL_ERR_USAGE, "add_name '%s': the configuration has names of "
                             "its own; only the default configuration has names", name);
    char norm[MAX_NAME + 1];
    bool wildcard;
    if (!parse_name(name, norm, &wildcard))
        return tli_ctx_failf(dflt, TL_ERR_USAGE, "add_name: '%.300s' is not a host name (labels "
                             "of 1 to 63 letters, digits, '-' or '_' between dots, at most 253 in "
                             "all, optionally after \"*.\")", name);
    size_t len = strlen(norm);
    for (size_t i = 0; i < dflt->n_names; i++)
        if (name_is(&dflt->names[i], wildcard, (const unsigned char *)norm, len))
            return tli_ctx_failf(dflt, TL_ERR_USAGE, "add_name: '%s' is already attached (names "
                                 "are compared without regard to case)", name);

    /* Unless the user chose one, the named configuration gets a session ID context of its own, so
     * a session from one name never resumes on another. Once in use, it can no longer change. */
    bool derive = !named->sid_custom && !named->sid_derived;
    unsigned char sid[32];
    if (derive && atomic_load_explicit(&named->frozen, memory_order_acquire))
        return tli_ctx_failf(dflt, TL_ERR_USAGE, "add_name '%s': the configuration is already in "
                             "use with the default session ID context; attach it before its first "
                             "engine, or give it one with tl_tls_ctx_set_session_id_context", name);
    if (derive && derive_sid(norm, wildcard, sid) != 0)
        return tli_ctx_fail_ssl(dflt, TL_ERR_RESOURCE, "add_name");

    char *copy = strdup(norm);
    tli_sni_name *grown = copy ? realloc(dflt->names, (dflt->n_names + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(copy);
        return tli_ctx_failf(dflt, TL_ERR_RESOURCE, "add_name: out of memory");
    }
    dflt->names = grown;
    dflt->names_ops = &names_ops;   /* from now on dflt owns names to free */
    if (derive) {
        if (!SSL_CTX_set_session_id_context(named->ssl, sid, sizeof sid)) {
            free(copy);
            return tli_ctx_fail_ssl(dflt, TL_ERR_RESOURCE, "add_name");
        }
        memcpy(named->sid, sid, sizeof sid);
        named->sid_len = sizeof sid;
        named->sid_derived = true;
    }
    named->is_named = true;
    dflt->names[dflt->n_names++] = (tli_sni_name){.name = copy, .len = len, .wildcard = wildcard,
                                                  .ctx = tl_tls_ctx_ref(named)};
    return 0;
}

/* The host name of a ClientHello's server_name extension (RFC 6066 section 3): *len 0 when there
 * is none. Returns -1 when the extension is malformed. OpenSSL's own parser, which runs after this
 * callback, accepts exactly one entry of type host_name filling the whole extension and fails the
 * handshake with decode_error otherwise; we hold the extension to the same rule (and refuse an
 * empty name, which RFC 6066 does not allow either) and fail it the same way, rather than choose a
 * configuration from bytes OpenSSL would refuse. */
static int client_hello_sni(SSL *ssl, const unsigned char **name, size_t *len)
{
    const unsigned char *p;
    size_t n;
    *len = 0;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &n))
        return 0;
    /* list length (2), type (1), name length (2), a name of at least one byte */
    if (n < 6 || ((size_t)p[0] << 8 | p[1]) != n - 2 || p[2] != TLSEXT_NAMETYPE_host_name ||
        ((size_t)p[3] << 8 | p[4]) != n - 5)
        return -1;
    *name = p + 5;
    *len = n - 5;
    return 0;
}

/* Switch ssl from dflt to named and copy what the SSL took from dflt's SSL_CTX when it was made. */
static int apply_named(SSL *ssl, const tl_tls_ctx *dflt, tl_tls_ctx *named)
{
    SSL_CTX *n = named->ssl;
    if (SSL_set_SSL_CTX(ssl, n) != n)
        return -1;
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(n), SSL_CTX_get_verify_callback(n));
    SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(n));
    uint64_t opts = SSL_CTX_get_options(n);
    SSL_clear_options(ssl, SSL_get_options(ssl) & ~opts);
    SSL_set_options(ssl, opts);
    SSL_set_num_tickets(ssl, SSL_CTX_get_num_tickets(n));
    /* The group list is parsed from text: only when it differs. */
    return SSL_set_min_proto_version(ssl, SSL_CTX_get_min_proto_version(n)) &&
                   SSL_set_max_proto_version(ssl, SSL_CTX_get_max_proto_version(n)) &&
                   SSL_set_session_id_context(ssl, named->sid, named->sid_len) &&
                   (strcmp(dflt->groups, named->groups) == 0 ||
                    SSL_set1_groups_list(ssl, named->groups))
               ? 0
               : -1;
}

/* Move the connection to `to`; the default stays its session configuration (ticket keys, cache).
 * 0, or -1 with the alert. */
static int switch_to(SSL *ssl, tl_tls_ctx *dflt, tl_tls_ctx *to, int *alert)
{
    tli_ssl_state *st = SSL_get_app_data(ssl);
    if (st)
        st->session_cfg = dflt;
    if (apply_named(ssl, dflt, to) != 0) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return -1;
    }
    return 0;
}

int tli_ctx_sni_switch(SSL *ssl, tl_tls_ctx *dflt, int *alert)
{
    /* Checked with or without names: one rule for every configuration (OpenSSL alone takes an
     * empty name, which RFC 6066's HostName<1..2^16-1> does not allow). */
    const unsigned char *sni = NULL;
    size_t len;
    if (client_hello_sni(ssl, &sni, &len) != 0) {
        ERR_raise_data(ERR_LIB_SSL, SSL_R_BAD_EXTENSION, "malformed server_name extension");
        *alert = SSL_AD_DECODE_ERROR;
        return -1;
    }
    if (dflt->n_names == 0)
        return 0;
    tl_tls_ctx *named = find(dflt, sni, len);
    if (!named || SSL_get_SSL_CTX(ssl) == named->ssl)
        return 0; /* the default, or already switched */
    return switch_to(ssl, dflt, named, alert);
}

/* ---- handshakes handed over by ALPN (tl_tls_ctx_set_alpn_switch) ------------------------- */

int tl_tls_ctx_set_alpn_switch(tl_tls_ctx *ctx, const char *protocol, tl_tls_alpn_switch_fn fn,
                               void *data)
{
    if (tli_ctx_mutable(ctx, "set_alpn_switch") != 0)
        return -1;
    if (ctx->role != TL_ROLE_SERVER)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "set_alpn_switch: only a server configuration "
                             "chooses by ALPN");
    unsigned char *wire = NULL;
    if (fn) {
        size_t n = protocol ? strlen(protocol) : 0;
        if (n == 0 || n > 255)
            return tli_ctx_failf(ctx, TL_ERR_USAGE, "set_alpn_switch: a protocol name of 1 to "
                                 "255 bytes is required");
        if (!(wire = malloc(n + 1)))
            return tli_ctx_failf(ctx, TL_ERR_RESOURCE, "set_alpn_switch: out of memory");
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, protocol, n);
    }
    free(ctx->switch_proto);
    ctx->switch_proto = wire;
    ctx->switch_fn = fn;
    ctx->switch_data = data;
    return 0;
}

/* Whether a ClientHello's ALPN extension (RFC 7301 section 3.1: a 2-byte list length, then
 * entries of a length byte and the name) offers the protocol (wire form). -1 when malformed. */
static int alpn_offers(const unsigned char *p, size_t n, const unsigned char *proto)
{
    if (n < 2 || ((size_t)p[0] << 8 | p[1]) != n - 2)
        return -1;
    for (size_t i = 2; i < n;) {
        size_t len = p[i];
        if (len == 0 || i + 1 + len > n)
            return -1;
        if (len == proto[0] && !memcmp(p + i + 1, proto + 1, len))
            return 1;
        i += 1 + len;
    }
    return 0;
}

int tli_ctx_alpn_switch(SSL *ssl, tl_tls_ctx *dflt, int *alert)
{
    const unsigned char *p, *sni = NULL;
    size_t n, len = 0;
    if (!dflt->switch_fn ||
        !SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                   &n) ||
        alpn_offers(p, n, dflt->switch_proto) != 1)
        return 0;   /* a malformed list is OpenSSL's to refuse */
    if (client_hello_sni(ssl, &sni, &len) != 0) {
        ERR_raise_data(ERR_LIB_SSL, SSL_R_BAD_EXTENSION, "malformed server_name extension");
        *alert = SSL_AD_DECODE_ERROR;
        return -1;
    }
    char name[MAX_NAME + 1] = "";
    if (len > MAX_NAME || (len && memchr(sni, 0, len)))
        return 0;
    if (len)
        memcpy(name, sni, len);
    name[len] = 0;
    tl_tls_ctx *to = dflt->switch_fn(len ? name : NULL, dflt->switch_data);
    if (!to || SSL_get_SSL_CTX(ssl) == to->ssl)
        return 0;
    return switch_to(ssl, dflt, to, alert) == 0 ? 1 : -1;
}
