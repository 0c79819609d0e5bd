/* server_tls.c - the server's TLS generations: the configuration's certificates grouped by the
 * names they serve, one tl_tls_ctx per group (the first group is the default, the others are
 * attached for SNI), the TLS policy applied to each, and one ticket key ring for all. */
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "server/server_int.h"
#include "tls/tli_tls.h"

tli_gen *tli_gen_ref(tli_gen *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

void tli_gen_unref(tli_gen *g)
{
    if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1) {
        tl_tls_ctx_free(g->tls);
        tl_server_config_free(g->cfg);
        free(g);
    }
}

tl_ticket_ring *tli_ring_for(const tl_server_config *cfg, char *err, size_t errlen)
{
    if (cfg->ticket_key_file)
        return tl_ticket_ring_load_file(cfg->ticket_key_file, err, errlen);
    /* Rotating every lifetime/4 with five keys keeps every ticket valid for its lifetime. */
    tl_ticket_ring *ring = tl_ticket_ring_new(5);
    if (!ring)
        tli_fmt(err, errlen, "cannot make ticket keys (out of memory or no randomness)");
    return ring;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The DNS names of a certificate file's leaf, sorted and joined by spaces ("" when it has none):
 * the key that groups an RSA and an ECDSA certificate for the same names. */
static char *leaf_names(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        tli_fmt(err, errlen, "%s: cannot open the certificate: %m", path);
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) {
        tli_drain_errors(err, errlen, "");
        tli_fmt(err, errlen, "%s: no PEM certificate in the file", path);
        return NULL;
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = sans ? sk_GENERAL_NAME_num(sans) : 0;
    const char **names = calloc((size_t)n + 1, sizeof *names);
    size_t count = 0, total = 1;
    for (int i = 0; names && i < n; i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_DNS)
            continue;
        const char *s = (const char *)ASN1_STRING_get0_data(gn->d.dNSName);
        if ((size_t)ASN1_STRING_length(gn->d.dNSName) != strlen(s))
            continue;   /* an embedded NUL: not a name we would ever match */
        names[count++] = s;
        total += strlen(s) + 1;
    }
    char *out = names ? malloc(total) : NULL;
    if (out) {
        qsort(names, count, sizeof *names, cmp_str);
        out[0] = 0;
        for (size_t i = 0; i < count; i++) {
            if (i)
                strcat(out, " ");
            strcat(out, names[i]);
        }
    } else {
        tli_fmt(err, errlen, "out of memory");
    }
    free(names);
    GENERAL_NAMES_free(sans);
    X509_free(x);
    return out;
}

/* The TLS policy every certificate group shares. */
static int apply_policy(tl_tls_ctx *t, const tl_server_config *cfg, tl_ticket_ring *ring)
{
    tl_verify verify = cfg->client_verify != (tl_verify)-1 ? cfg->client_verify
                       : cfg->client_ca                    ? TL_VERIFY_REQUIRE
                                                           : TL_VERIFY_NONE;
    if (tl_tls_ctx_allow_expired(t, cfg->allow_expired) != 0 ||
        tl_tls_ctx_set_versions(t, cfg->tls_min, cfg->tls_max) != 0 ||
        tl_tls_ctx_set_ciphers(t, cfg->ciphers, cfg->suites) != 0 ||
        (cfg->groups && tl_tls_ctx_set_groups(t, cfg->groups) != 0) ||
        (cfg->alpn && tl_tls_ctx_set_alpn(t, cfg->alpn) != 0) ||
        tl_tls_ctx_set_session_cache(t, cfg->session_cache,
                                     (unsigned)(cfg->session_lifetime_ms / 1000)) != 0 ||
        tl_tls_ctx_set_tickets(t, cfg->tickets) != 0 ||
        tl_tls_ctx_set_num_tickets(t, (unsigned)cfg->num_tickets) != 0 ||
        tl_tls_ctx_set_ticket_ring(t, ring) != 0 ||
        (cfg->client_ca && tl_tls_ctx_set_ca_file(t, cfg->client_ca) != 0) ||
        tl_tls_ctx_set_verify(t, verify) != 0)
        return -1;
    return 0;
}

/* Whether a space-separated name list (from leaf_names) holds this name. */
static bool has_name(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += len)
        if ((p == list || p[-1] == ' ') && (p[len] == 0 || p[len] == ' '))
            return true;
    return false;
}

typedef struct group {
    char *names;
    const char *cert;              /* its first certificate file, for messages */
    tl_tls_ctx *tls;
} group;

/* Can the file be read? Otherwise say so under the option's name ("key /x: cannot open: ..."),
 * which the messages of the loaders below (the path alone) do not tell. */
static bool readable(const char *option, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        tli_fmt(err, errlen, "%s %s: cannot open: %m", option, path);
        return false;
    }
    fclose(f);
    return true;
}

tli_gen *tli_gen_build(const tl_server_config *cfg, tl_ticket_ring *ring, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n_certs; i++)
        if (!readable("cert", cfg->certs[i].cert, err, errlen) ||
            (cfg->certs[i].key && !readable("key", cfg->certs[i].key, err, errlen)))
            return NULL;
    if ((cfg->client_ca && !readable("client-ca", cfg->client_ca, err, errlen)) ||
        (cfg->ocsp == TLI_OCSP_FILE && !readable("ocsp-staple", cfg->ocsp_file, err, errlen)) ||
        (cfg->ticket_key_file && !ring && !readable("ticket-key-file", cfg->ticket_key_file, err,
                                                    errlen)))
        return NULL;
    if (!cfg->n_certs) {
        tli_fmt(err, errlen, "no certificate: give cert FILE and key FILE (or make every listener plain)");
        return NULL;
    }
    if (!cfg->certs[cfg->n_certs - 1].key) {
        tli_fmt(err, errlen, "cert %s has no key: give key FILE after it", cfg->certs[cfg->n_certs - 1].cert);
        return NULL;
    }
    tl_ticket_ring *own_ring = NULL;
    if (!ring && !(ring = own_ring = tli_ring_for(cfg, err, errlen)))
        return NULL;
    group *groups = calloc(cfg->n_certs, sizeof *groups);
    size_t ngroups = 0;
    tli_gen *gen = NULL;
    bool ok = groups != NULL;
    if (!ok)
        tli_fmt(err, errlen, "out of memory");
    for (size_t i = 0; ok && i < cfg->n_certs; i++) {
        char *names = leaf_names(cfg->certs[i].cert, err, errlen);
        if (!names) {
            ok = false;
            break;
        }
        group *g = NULL;
        for (size_t j = 0; j < ngroups && !g; j++)
            if (!strcmp(groups[j].names, names))
                g = &groups[j];
        if (g) {
            free(names);
        } else {
            g = &groups[ngroups++];
            g->names = names;
            g->cert = cfg->certs[i].cert;
            tl_tls_ctx_opts opts = {.kdf = cfg->tls_kdf};
            if (!(g->tls = tl_tls_ctx_new_ex(TL_ROLE_SERVER, &opts))) {
                tli_fmt(err, errlen, "out of memory");
                ok = false;
                break;
            }
            if (apply_policy(g->tls, cfg, ring) != 0) {
                tli_fmt(err, errlen, "%s", tl_tls_ctx_error(g->tls));
                ok = false;
                break;
            }
        }
        if (tl_tls_ctx_use_cert_file(g->tls, cfg->certs[i].cert, cfg->certs[i].key) != 0) {
            tli_fmt(err, errlen, "%s", tl_tls_ctx_error(g->tls));
            ok = false;
        }
    }
    /* Attach every other group under each of its names; a name claimed earlier stays there. */
    for (size_t j = 1; ok && j < ngroups; j++) {
        char *names = strdup(groups[j].names), *save = NULL;
        unsigned attached = 0;
        if (!names) {
            tli_fmt(err, errlen, "out of memory");
            ok = false;
            break;
        }
        for (char *n = strtok_r(names, " ", &save); ok && n; n = strtok_r(NULL, " ", &save)) {
            bool taken = false;
            for (size_t k = 0; k < j && !taken; k++)
                taken = has_name(groups[k].names, n);
            if (taken)
                continue;
            if (tl_tls_ctx_add_name(groups[0].tls, n, groups[j].tls) != 0) {
                tli_fmt(err, errlen, "%s: %s", groups[j].cert, tl_tls_ctx_error(groups[0].tls));
                ok = false;
            }
            attached++;
        }
        free(names);
        /* A certificate that would never be chosen is a configuration mistake, not a detail. */
        if (ok && !attached) {
            tli_fmt(err, errlen, "%s: it would never be used: %s", groups[j].cert,
                    *groups[j].names ? "every name it has is served by an earlier certificate "
                                       "(an RSA and an ECDSA certificate pair up only when "
                                       "their names are the same)"
                                     : "it has no DNS names and is not the first certificate");
            ok = false;
        }
    }
    if (ok && cfg->alpn_switch_fn &&
        tl_tls_ctx_set_alpn_switch(groups[0].tls, cfg->alpn_switch_proto, cfg->alpn_switch_fn,
                                   cfg->alpn_switch_data) != 0) {
        tli_fmt(err, errlen, "%s", tl_tls_ctx_error(groups[0].tls));
        ok = false;
    }
    if (ok && tl_tls_ctx_freeze(groups[0].tls) != 0) {
        tli_fmt(err, errlen, "%s", tl_tls_ctx_error(groups[0].tls));
        ok = false;
    }
    if (ok && !(gen = calloc(1, sizeof *gen))) {
        tli_fmt(err, errlen, "out of memory");
        ok = false;
    }
    if (ok) {
        atomic_init(&gen->refs, 1);
        gen->tls = tl_tls_ctx_ref(groups[0].tls);
        if (tl_tls_ctx_cert_expiry(gen->tls, &gen->not_after) != 0)
            gen->not_after = 0;
    }
    for (size_t j = 0; groups && j < ngroups; j++) {
        free(groups[j].names);
        tl_tls_ctx_free(groups[j].tls);   /* the default holds the named ones */
    }
    free(groups);
    tl_ticket_ring_free(own_ring);        /* the configurations hold their references */
    return gen;
}
