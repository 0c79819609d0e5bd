/* demo.c - `tlsloop demo`: a client and a server engine talking through memory, every wrap/unwrap
 * traced with its status, handshake status and byte counts: a request and an answer, a second
 * connection resumed with the first's ticket, a clean close. Nothing touches the network. */
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <tlsloop/buf.h>
#include <tlsloop/certgen.h>
#include <tlsloop/engine.h>
#include <tlsloop/tls_ctx.h>

#include "tools.h"

#define NET_BUF 32768

typedef struct demo_opts {
    int version;       /* 0: TLS 1.2 or 1.3 */
    tl_key_type key;
    bool tasks;
    bool quiet;
} demo_opts;

typedef struct peer {
    const char *name;
    tl_engine *e;
    tl_buf inbox;
} peer;

static bool quiet;

void cmd_demo_usage(FILE *f)
{
    fprintf(f, "usage: tlsloop demo [--tls1.2 | --tls1.3] [--rsa | --ecdsa] [--tasks] [--quiet]\n\n"
               "Two TLS engines, a client and a server, talk through memory buffers: a full\n"
               "handshake, a request and an answer, then a second connection that resumes the\n"
               "first one's session, then a clean close. Every engine call is printed with its\n"
               "status, handshake status and byte counts. Certificates are made on the spot.\n\n"
               "  --tls1.2, --tls1.3  use only that protocol version (default: the best of both)\n"
               "  --rsa, --ecdsa      server key type (default: ECDSA P-256)\n"
               "  --tasks             delegate the CPU-heavy handshake steps (run here inline)\n"
               "  --quiet             print only the summary of each connection\n");
}

static int parse(int argc, char **argv, demo_opts *o)
{
    static const struct option longopts[] = {
        {"tls1.2", no_argument, NULL, '2'}, {"tls1.3", no_argument, NULL, '3'},
        {"rsa", no_argument, NULL, 'r'},    {"ecdsa", no_argument, NULL, 'e'},
        {"tasks", no_argument, NULL, 't'},  {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},   {NULL, 0, NULL, 0},
    };
    *o = (demo_opts){.key = TL_KEY_ECDSA_P256};
    int c;
    optind = 1;
    opterr = 0; /* our own message below names the program */
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case '2': o->version = TL_TLS1_2; break;
        case '3': o->version = TL_TLS1_3; break;
        case 'r': o->key = TL_KEY_RSA_2048; break;
        case 'e': o->key = TL_KEY_ECDSA_P256; break;
        case 't': o->tasks = true; break;
        case 'q': o->quiet = true; break;
        case 'h': cmd_demo_usage(stdout); return 1;
        default:
            fprintf(stderr, "tlsloop demo: unknown option '%s' (see 'tlsloop help demo')\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tlsloop demo: unexpected argument '%s' (see 'tlsloop help demo')\n",
                argv[optind]);
        return -1;
    }
    return 0;
}

static void trace(const char *who, const char *call, const tl_result *r)
{
    static const char *const hs[] = {"not-handshaking", "need-wrap", "need-unwrap", "need-task",
                                     "finished"};
    if (!quiet)
        printf("  %-6s %-7s -> %-11s hs=%-15s consumed %5zu  produced %5zu\n", who, call,
               tl_status_name(r->status), hs[r->hs], r->consumed, r->produced);
}

/* Take all of a peer's network output into the other's inbox. */
static tl_status pump_out(peer *from, peer *to, const void *app, size_t len)
{
    uint8_t net[NET_BUF];
    size_t off = 0;
    tl_result r;
    do {
        r = tl_engine_wrap(from->e, app ? (const uint8_t *)app + off : NULL, len - off, net,
                           sizeof net);
        if (r.consumed || r.produced || r.status != TL_OK)
            trace(from->name, "wrap", &r);
        off += r.consumed;
        tl_buf_append(&to->inbox, net, r.produced);
        if (r.status == TL_NEED_TASK) {
            if (!quiet)
                printf("  %-6s task    -> %s\n", from->name,
                       tl_status_name(tl_engine_run_task(from->e)));
            else
                tl_engine_run_task(from->e);
            r.status = TL_OK;
            continue;
        }
    } while (r.status == TL_OK && (off < len || tl_engine_pending_output(from->e)));
    return r.status;
}

/* Unwrap a peer's inbox; print what arrived. */
static tl_status pump_in(peer *p, tl_buf *app)
{
    uint8_t buf[NET_BUF];
    tl_result r;
    do {
        r = tl_engine_unwrap(p->e, tl_buf_rptr(&p->inbox), tl_buf_len(&p->inbox), buf, sizeof buf);
        trace(p->name, "unwrap", &r);
        tl_buf_consume(&p->inbox, r.consumed);
        if (app)
            tl_buf_append(app, buf, r.produced);
        if (r.status == TL_NEED_TASK) {
            tl_status st = tl_engine_run_task(p->e);
            if (!quiet)
                printf("  %-6s task    -> %s\n", p->name, tl_status_name(st));
            r.status = TL_OK;
        }
    } while (r.status == TL_OK);
    return r.status;
}

static void facts(const char *who, tl_engine *e)
{
    tl_engine_info i;
    tl_engine_get_info(e, &i);
    printf("  %s: %s %s %s, resumed: %s, ALPN: %s\n", who, i.version ? i.version : "-",
           i.cipher ? i.cipher : "-", i.group ? i.group : "(no key exchange)",
           i.resumed ? "yes" : "no", i.alpn[0] ? i.alpn : "-");
    if (i.has_peer_cert)
        printf("  %s: peer %s, issued by %s, verification: %s\n", who, i.peer_subject,
               i.peer_issuer, i.verify_error);
}

static int fail(const char *what, tl_engine *e)
{
    fprintf(stderr, "tlsloop demo: %s: %s (%s)\n", what, tl_engine_error(e),
            tl_error_kind_name(tl_engine_error_kind(e)));
    return -1;
}

/* One connection: handshake, request, answer, close. Returns 0 or -1; *session gets the new
 * session the client can resume. */
static int connection(tl_tls_ctx *cctx, tl_tls_ctx *sctx, const demo_opts *o, tl_session **session)
{
    unsigned flags = o->tasks ? TL_ENGINE_DELEGATE_TASKS : 0;
    tl_engine_opts co = {.server_name = "localhost", .flags = flags, .session = *session};
    tl_engine_opts so = {.flags = flags};
    peer c = {"client", tl_engine_new(cctx, &co), TL_BUF_INIT};
    peer s = {"server", tl_engine_new(sctx, &so), TL_BUF_INIT};
    tl_buf c_app = TL_BUF_INIT, s_app = TL_BUF_INIT;
    int rc = -1;
    if (!c.e || !s.e) {
        fprintf(stderr, "tlsloop demo: out of memory\n");
        goto out;
    }
    if (!quiet)
        printf("  -- handshake\n");
    for (int round = 0; round < 6 && !(tl_engine_handshake_done(c.e) &&
                                       tl_engine_handshake_done(s.e) &&
                                       !tl_engine_pending_output(c.e) &&
                                       !tl_engine_pending_output(s.e));
         round++) {
        if (pump_out(&c, &s, NULL, 0) == TL_ERROR)
            goto engine_error;
        if (pump_in(&s, &s_app) == TL_ERROR || pump_out(&s, &c, NULL, 0) == TL_ERROR)
            goto engine_error;
        if (pump_in(&c, &c_app) == TL_ERROR)
            goto engine_error;
    }
    if (!quiet)
        printf("  -- request and answer\n");
    static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";
    if (pump_out(&c, &s, req, sizeof req - 1) == TL_ERROR || pump_in(&s, &s_app) == TL_ERROR)
        goto engine_error;
    if (pump_out(&s, &c, resp, sizeof resp - 1) == TL_ERROR || pump_in(&c, &c_app) == TL_ERROR)
        goto engine_error;
    if (!quiet)
        printf("  -- close\n");
    tl_engine_close(c.e);
    pump_out(&c, &s, NULL, 0);
    tl_status st = pump_in(&s, &s_app);
    tl_engine_close(s.e);
    pump_out(&s, &c, NULL, 0);
    tl_status ct = pump_in(&c, &c_app);
    printf("  server received %zu bytes, client received %zu bytes; server saw %s, client saw "
           "%s\n", tl_buf_len(&s_app), tl_buf_len(&c_app), tl_status_name(st),
           tl_status_name(ct));
    facts("client", c.e);
    facts("server", s.e);
    if (tl_buf_len(&s_app) != sizeof req - 1 || tl_buf_len(&c_app) != sizeof resp - 1 ||
        st != TL_CLOSED || ct != TL_CLOSED) {
        fprintf(stderr, "tlsloop demo: the exchange did not complete\n");
        goto out;
    }
    tl_session_free(*session);
    *session = tl_engine_get_session(c.e);
    rc = 0;
    goto out;
engine_error:
    fail(tl_engine_error(c.e)[0] ? "client" : "server",
         tl_engine_error(c.e)[0] ? c.e : s.e);
out:
    tl_engine_free(c.e);
    tl_engine_free(s.e);
    tl_buf_free(&c.inbox);
    tl_buf_free(&s.inbox);
    tl_buf_free(&c_app);
    tl_buf_free(&s_app);
    return rc;
}

/* A CA and a server certificate for localhost signed by it, made now. */
static int make_certs(tl_key_type key, tl_certgen_pair *ca, tl_certgen_pair *leaf)
{
    static const char *const names[] = {"localhost"};
    static const char *const ips[] = {"127.0.0.1", "::1"};
    char err[256];
    tl_certgen_spec ca_spec = {.key = TL_KEY_ECDSA_P256, .common_name = "tlsloop demo CA",
                               .is_ca = true, .not_before = -60, .not_after = 3600};
    tl_certgen_spec leaf_spec = {.key = key, .dns_names = names, .n_dns = 1, .ip_addrs = ips,
                                 .n_ip = 2, .not_before = -60, .not_after = 3600};
    if (tl_certgen_issue(&ca_spec, NULL, ca, err, sizeof err) != 0 ||
        tl_certgen_issue(&leaf_spec, ca, leaf, err, sizeof err) != 0) {
        fprintf(stderr, "tlsloop demo: cannot make certificates: %s\n", err);
        return -1;
    }
    return 0;
}

static tl_tls_ctx *configure(tl_role role, const demo_opts *o, const tl_certgen_pair *ca,
                             const tl_certgen_pair *leaf)
{
    tl_tls_ctx *ctx = tl_tls_ctx_new(role);
    if (!ctx) {
        fprintf(stderr, "tlsloop demo: out of memory\n");
        return NULL;
    }
    int rc = role == TL_ROLE_SERVER ? tl_tls_ctx_use_cert_pem(ctx, leaf->cert_pem, leaf->key_pem)
                                    : tl_tls_ctx_set_ca_pem(ctx, ca->cert_pem);
    if (rc == 0)
        rc = tl_tls_ctx_set_alpn(ctx, "http/1.1");
    if (rc == 0 && o->version)
        rc = tl_tls_ctx_set_versions(ctx, o->version, o->version);
    if (rc != 0) {
        fprintf(stderr, "tlsloop demo: %s\n", tl_tls_ctx_error(ctx));
        tl_tls_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

int cmd_demo(int argc, char **argv)
{
    demo_opts o;
    int p = parse(argc, argv, &o);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    quiet = o.quiet;
    tl_certgen_pair ca = {0}, leaf = {0};
    tl_tls_ctx *cctx = NULL, *sctx = NULL;
    tl_session *session = NULL;
    int rc = EXIT_FAILURE_RUN;
    printf("tlsloop demo: a TLS client and server engine talking through memory (no sockets)\n");
    if (make_certs(o.key, &ca, &leaf) != 0)
        goto out;
    printf("certificates: a test CA and an %s certificate for localhost, made just now\n",
           o.key == TL_KEY_RSA_2048 ? "RSA-2048" : "ECDSA P-256");
    if (!(cctx = configure(TL_ROLE_CLIENT, &o, &ca, &leaf)) ||
        !(sctx = configure(TL_ROLE_SERVER, &o, &ca, &leaf)))
        goto out;
    printf("\nconnection 1: full handshake\n");
    if (connection(cctx, sctx, &o, &session) != 0)
        goto out;
    printf("\nconnection 2: resumes connection 1's session (%s)\n",
           session ? "offered" : "none to offer");
    if (connection(cctx, sctx, &o, &session) != 0)
        goto out;
    printf("\nboth connections completed and closed cleanly\n");
    rc = EXIT_OK;
out:
    tl_session_free(session);
    tl_tls_ctx_free(cctx);
    tl_tls_ctx_free(sctx);
    tl_certgen_pair_free(&ca);
    tl_certgen_pair_free(&leaf);
    return rc;
}
