/* test_acme_state.c - the ACME client's set-up without sockets (src/acme/acme.c, acme_chal.c):
 * the state directory and its files (modes, the self-signed placeholder, the account key made
 * once and kept), the configuration it changes (cert and key), the option checks and the choice
 * of challenge, and the challenge table (HTTP-01 answers, the TLS-ALPN-01 hook). */
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <tlsloop/certgen.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "acme/acme_int.h"
#include "test.h"

static char dir[64];

static tl_server_config *config(const char *const *opts)
{
    tl_server_config *cfg = tl_server_config_new();
    if (!cfg || tl_acme_config_init(cfg) != 0)
        return NULL;
    char err[300];
    for (size_t i = 0; opts[i]; i += 2)
        if (tl_server_config_set(cfg, opts[i], opts[i + 1], err, sizeof err) != 0) {
            fprintf(stderr, "  %s %s: %s\n", opts[i], opts[i + 1], err);
            tl_server_config_free(cfg);
            return NULL;
        }
    return cfg;
}

static int mode_of(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int)(sb.st_mode & 0777) : -1;
}

TEST(state_directory_files_and_placeholder)
{
    char state[128];
    snprintf(state, sizeof state, "%s/a/b", dir);   /* made, parents too */
    const char *opts[] = {"listen", "127.0.0.1:0", "acme-domain", "one.test", "acme-domain",
                          "two.test", "acme-state", state, NULL};
    tl_server_config *cfg = config(opts);
    REQUIRE(cfg);
    CHECK(tl_acme_wanted(cfg));
    char err[400];
    tl_acme *a = tl_acme_new(cfg, "/nonexistent", err, sizeof err);
    REQUIRE(a);
    CHECK(a->challenge == TL_ACME_TLS_ALPN_01);   /* a TLS listener: the default */
    CHECK_EQ_INT(mode_of(state), 0700);
    char path[256];
    snprintf(path, sizeof path, "%s/account.key", state);
    CHECK_EQ_INT(mode_of(path), 0600);
    CHECK_STR(tl_acme_cert_path(a), (snprintf(path, sizeof path, "%s/certificate.pem", state),
                                     path));
    CHECK_EQ_INT(mode_of(path), 0600);
    /* The placeholder: self-signed, both names, the key in the same file. */
    FILE *f = fopen(path, "r");
    REQUIRE(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    rewind(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    REQUIRE(k && x);
    CHECK(X509_check_private_key(x, k) == 1);
    CHECK(X509_check_host(x, "one.test", 0, 0, NULL) == 1);
    CHECK(X509_check_host(x, "two.test", 0, 0, NULL) == 1);
    CHECK(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0);
    /* The configuration serves it: cert and key both name the file. */
    CHECK_EQ_INT((int)tl_server_config_count(cfg, "cert"), 1);
    char *tp = strdup(a->thumbprint);
    tl_acme_free(a);
    tl_server_config_free(cfg);
    /* A second start keeps the account key (same thumbprint) and the certificate. */
    cfg = config(opts);
    a = tl_acme_new(cfg, "/nonexistent", err, sizeof err);
    REQUIRE(a);
    CHECK_STR(a->thumbprint, tp);
    f = fopen(path, "r");
    X509 *x2 = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    CHECK(x2 && X509_cmp(x, x2) == 0);
    X509_free(x2);
    free(tp);
    X509_free(x);
    EVP_PKEY_free(k);
    tl_acme_free(a);
    tl_server_config_free(cfg);
}

TEST(expired_certificate_is_replaced_by_the_placeholder)
{
    char state[128], path[200], err[400];
    snprintf(state, sizeof state, "%s/expired", dir);
    snprintf(path, sizeof path, "%s/certificate.pem", state);
    REQUIRE(mkdir(state, 0700) == 0);
    static const char *const dns[] = {"e.test"};
    tl_certgen_spec spec = {.key = TL_KEY_ECDSA_P256, .dns_names = dns, .n_dns = 1,
                            .not_before = -7200, .not_after = -3600};
    tl_certgen_pair p = {0};
    REQUIRE(tl_certgen_issue(&spec, NULL, &p, err, sizeof err) == 0);
    REQUIRE(tl_certgen_write(&p, path, NULL, err, sizeof err) == 0);
    const char *opts[] = {"listen", "127.0.0.1:0", "acme-domain", "e.test", "acme-state", state,
                          NULL};
    tl_server_config *cfg = config(opts);
    tl_acme *a = tl_acme_new(cfg, "/nonexistent", err, sizeof err);
    REQUIRE(a);
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t cap = 0;
    REQUIRE(f && getdelim(&text, &cap, 0, f) > 0);
    fclose(f);
    int64_t nb, na;
    bool self;
    REQUIRE(tli_acme_cert_times(text, &nb, &na, &self) == 0);
    CHECK(self && na > time(NULL) + 86400);
    /* and the server accepts the configuration now */
    CHECK(tl_server_check(cfg, err, sizeof err) == 0);
    free(text);
    tl_certgen_pair_free(&p);
    tl_acme_free(a);
    tl_server_config_free(cfg);
}

TEST(default_state_and_challenge_choice)
{
    char def[128];
    snprintf(def, sizeof def, "%s/default", dir);
    const char *plain_only[] = {"listen", "127.0.0.1:0,plain", "acme-domain", "x.test", NULL};
    tl_server_config *cfg = config(plain_only);
    char err[400];
    tl_acme *a = tl_acme_new(cfg, def, err, sizeof err);
    REQUIRE(a);
    CHECK(a->challenge == TL_ACME_HTTP_01);   /* no TLS listener */
    CHECK_STR(a->state, def);
    tl_acme_free(a);
    tl_server_config_free(cfg);

    const char *alpn_no_tls[] = {"listen", "127.0.0.1:0,plain", "acme-domain", "x.test",
                                 "acme-challenge", "tls-alpn-01", NULL};
    cfg = config(alpn_no_tls);
    CHECK(!tl_acme_new(cfg, def, err, sizeof err));
    CHECK_HAS(err, "needs a TLS listener");
    tl_server_config_free(cfg);

    const char *http_no_plain[] = {"listen", "127.0.0.1:0", "acme-domain", "x.test",
                                   "acme-challenge", "http-01", NULL};
    cfg = config(http_no_plain);
    CHECK(!tl_acme_new(cfg, def, err, sizeof err));
    CHECK_HAS(err, "needs a plain listener");
    tl_server_config_free(cfg);

    const char *bad_ca[] = {"listen", "127.0.0.1:0", "acme-domain", "x.test", "acme-ca",
                            "/nonexistent/ca.pem", NULL};
    cfg = config(bad_ca);
    CHECK(!tl_acme_new(cfg, def, err, sizeof err));
    CHECK_HAS(err, "acme-ca /nonexistent/ca.pem");
    tl_server_config_free(cfg);

    const char *none[] = {"listen", "127.0.0.1:0", NULL};
    cfg = config(none);
    CHECK(!tl_acme_wanted(cfg));
    tl_server_config_free(cfg);
}

TEST(option_checks)
{
    tl_server_config *cfg = tl_server_config_new();
    REQUIRE(cfg && tl_acme_config_init(cfg) == 0);
    char err[300];
    CHECK(tl_server_config_set(cfg, "acme-domain", "*.x.test", err, sizeof err) == -1);
    CHECK_HAS(err, "no wildcards");
    CHECK(tl_server_config_set(cfg, "acme-domain", "a..b", err, sizeof err) == -1);
    CHECK(tl_server_config_set(cfg, "acme-domain", "ok-1.example", err, sizeof err) == 0);
    CHECK(tl_server_config_set(cfg, "acme-challenge", "dns-01", err, sizeof err) == -1);
    CHECK(tl_server_config_set(cfg, "acme-directory", "ftp://x/", err, sizeof err) == -1);
    CHECK(tl_server_config_set(cfg, "acme-retry", "0", err, sizeof err) == -1);
    CHECK(tl_server_config_set(cfg, "acme-retry", "5s", err, sizeof err) == 0);
    tl_server_config_free(cfg);
}

TEST(challenge_table)
{
    char state[128], err[400];
    snprintf(state, sizeof state, "%s/chal", dir);
    const char *opts[] = {"listen", "127.0.0.1:0", "listen", "127.0.0.1:0,plain", "acme-domain",
                          "c.test", "acme-state", state, NULL};
    tl_server_config *cfg = config(opts);
    tl_acme *a = tl_acme_new(cfg, "/nonexistent", err, sizeof err);
    REQUIRE(a);
    tl_buf b = {0};
    CHECK_EQ_INT(tl_acme_http01(a, "/.well-known/acme-challenge/tok1", &b), 0);
    REQUIRE(tli_acme_chal_http_add(a, "tok1", "tok1.thumb") == 0);
    CHECK_EQ_INT(tl_acme_http01(a, "/.well-known/acme-challenge/tok1", &b), 1);
    CHECK(tl_buf_len(&b) == 10 && !memcmp(tl_buf_rptr(&b), "tok1.thumb", 10));
    tl_buf_free(&b);
    CHECK_EQ_INT(tl_acme_http01(a, "/.well-known/acme-challenge/tok2", &b), 0);
    CHECK_EQ_INT(tl_acme_http01(a, "/other/tok1", &b), 0);
    tli_acme_chal_http_del(a, "tok1");
    CHECK_EQ_INT(tl_acme_http01(a, "/.well-known/acme-challenge/tok1", &b), 0);

    CHECK(!tli_acme_alpn_switch("c.test", a));
    REQUIRE(tli_acme_chal_alpn_add(a, "c.test", "t.thumb", err, sizeof err) == 0);
    tl_tls_ctx *v = tli_acme_alpn_switch("C.TEST", a);   /* names compare without case */
    CHECK(v != NULL);
    CHECK(!tli_acme_alpn_switch("d.test", a));
    CHECK(!tli_acme_alpn_switch(NULL, a));
    tli_acme_chal_alpn_del(a, "c.test");
    CHECK(!tli_acme_alpn_switch("c.test", a));
    CHECK(a->n_retired == 1);   /* kept alive for handshakes that may still use it */
    /* Ours are shared with other instances while pending, and gone after. */
    char path[256];
    snprintf(path, sizeof path, "%s/challenges/http-01.tok1", state);
    CHECK(access(path, F_OK) != 0);
    REQUIRE(tli_acme_chal_http_add(a, "tok9", "tok9.thumb") == 0);
    snprintf(path, sizeof path, "%s/challenges/http-01.tok9", state);
    CHECK_EQ_INT(mode_of(path), 0600);
    tli_acme_chal_http_del(a, "tok9");
    CHECK(access(path, F_OK) != 0);
    tl_acme_free(a);
    tl_server_config_free(cfg);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        abort();
}

TEST(another_instances_challenges_from_the_shared_directory)
{
    char state[128], err[400], path[256];
    snprintf(state, sizeof state, "%s/shared", dir);
    const char *opts[] = {"listen", "127.0.0.1:0", "listen", "127.0.0.1:0,plain", "acme-domain",
                          "s.test", "acme-state", state, NULL};
    tl_server_config *cfg = config(opts);
    tl_acme *a = tl_acme_new(cfg, "/nonexistent", err, sizeof err);
    REQUIRE(a);
    /* What another instance's tli_acme_chal_*_add writes. */
    snprintf(path, sizeof path, "%s/challenges/http-01.otherTok", state);
    write_text(path, "otherTok.thumb");
    tl_buf b = {0};
    CHECK_EQ_INT(tl_acme_http01(a, "/.well-known/acme-challenge/otherTok", &b), 1);
    CHECK(tl_buf_len(&b) == 14 && !memcmp(tl_buf_rptr(&b), "otherTok.thumb", 14));
    tl_buf_free(&b);
    CHECK_EQ_INT(tl_acme_http01(a, "/.well-known/acme-challenge/../challenges/x", &b), 0);
    CHECK_EQ_INT(tl_acme_http01(a, "/.well-known/acme-challenge/.hidden", &b), 0);
    unlink(path);
    CHECK_EQ_INT(tl_acme_http01(a, "/.well-known/acme-challenge/otherTok", &b), 0);

    snprintf(path, sizeof path, "%s/challenges/tls-alpn-01.s.test", state);
    CHECK(!tli_acme_alpn_switch("s.test", a));
    write_text(path, "t1.thumb");
    tl_tls_ctx *v1 = tli_acme_alpn_switch("S.test", a);
    CHECK(v1 != NULL);
    CHECK(tli_acme_alpn_switch("s.test", a) == v1);   /* made once */
    write_text(path, "t2.thumb");                     /* a new challenge for the name */
    tl_tls_ctx *v2 = tli_acme_alpn_switch("s.test", a);
    CHECK(v2 != NULL && v2 != v1);
    unlink(path);
    CHECK(!tli_acme_alpn_switch("s.test", a));        /* over: dropped */
    CHECK(!tli_acme_alpn_switch("../../etc/x", a));
    tl_acme_free(a);
    tl_server_config_free(cfg);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/tl_acme_state_XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    RUN(state_directory_files_and_placeholder);
    RUN(expired_certificate_is_replaced_by_the_placeholder);
    RUN(default_state_and_challenge_choice);
    RUN(option_checks);
    RUN(challenge_table);
    RUN(another_instances_challenges_from_the_shared_directory);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", dir);
    TEST_MAIN_END();
}
