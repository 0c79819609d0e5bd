/* engine_pair.c - a TLS client and server engine talking through memory buffers.
 * Build: cc engine_pair.c $(pkg-config --cflags --libs tlsloop) */
#include <stdio.h>
#include <string.h>

#include <tlsloop/certgen.h>
#include <tlsloop/engine.h>

/* Network bytes in flight towards one engine. */
typedef struct wire {
    unsigned char buf[65536];
    size_t len;
} wire;

/* Move everything `e` has to send onto `to`; app data too, if given. */
static tl_status send_all(tl_engine *e, const char *app, wire *to)
{
    size_t off = 0, len = app ? strlen(app) : 0;
    tl_result r;
    do {
        r = tl_engine_wrap(e, app ? app + off : NULL, len - off, to->buf + to->len,
                           sizeof to->buf - to->len);
        off += r.consumed;
        to->len += r.produced;
        if (r.status == TL_NEED_TASK)
            r.status = tl_engine_run_task(e); /* a real program may run it on another thread */
    } while (r.status == TL_OK && (off < len || tl_engine_pending_output(e) > 0));
    return r.status;
}

/* Feed `from` into `e` and print the application data that comes out. */
static tl_status receive_all(tl_engine *e, wire *from, const char *who)
{
    char app[4096];
    tl_result r;
    do {
        r = tl_engine_unwrap(e, from->buf, from->len, app, sizeof app);
        memmove(from->buf, from->buf + r.consumed, from->len - r.consumed);
        from->len -= r.consumed;
        if (r.produced > 0)
            printf("%s received: %.*s\n", who, (int)r.produced, app);
        if (r.status == TL_NEED_TASK)
            r.status = tl_engine_run_task(e);
    } while (r.status == TL_OK);
    return r.status; /* TL_WANT_INPUT: all taken; TL_CLOSED: close_notify; or an error */
}

int main(void)
{
    /* A CA and a certificate for localhost, made now. */
    static const char *const names[] = {"localhost"};
    tl_certgen_spec ca_spec = {.common_name = "example CA", .is_ca = true, .not_after = 3600};
    tl_certgen_spec leaf_spec = {.dns_names = names, .n_dns = 1, .not_after = 3600};
    tl_certgen_pair ca, leaf;
    char err[256];
    if (tl_certgen_issue(&ca_spec, NULL, &ca, err, sizeof err) != 0 ||
        tl_certgen_issue(&leaf_spec, &ca, &leaf, err, sizeof err) != 0) {
        fprintf(stderr, "certificates: %s\n", err);
        return 1;
    }

    /* One configuration per role, shared by every connection of that role. */
    tl_tls_ctx *server_cfg = tl_tls_ctx_new(TL_ROLE_SERVER);
    tl_tls_ctx *client_cfg = tl_tls_ctx_new(TL_ROLE_CLIENT);
    if (!server_cfg || !client_cfg ||
        tl_tls_ctx_use_cert_pem(server_cfg, leaf.cert_pem, leaf.key_pem) != 0 ||
        tl_tls_ctx_set_ca_pem(client_cfg, ca.cert_pem) != 0) {
        fprintf(stderr, "configuration: %s\n",
                server_cfg && client_cfg ? tl_tls_ctx_error(server_cfg) : "out of memory");
        return 1;
    }

    /* One engine per connection. The client verifies the name it connects to. */
    tl_engine_opts copts = {.server_name = "localhost"};
    tl_engine *client = tl_engine_new(client_cfg, &copts);
    tl_engine *server = tl_engine_new(server_cfg, NULL);
    static wire to_server, to_client;

    /* The handshake: pass bytes back and forth until both sides are done. */
    for (int i = 0; i < 5 && !(tl_engine_handshake_done(client) &&
                               tl_engine_handshake_done(server));
         i++) {
        if (send_all(client, NULL, &to_server) == TL_ERROR ||
            receive_all(server, &to_server, "server") == TL_ERROR ||
            send_all(server, NULL, &to_client) == TL_ERROR ||
            receive_all(client, &to_client, "client") == TL_ERROR)
            break;
    }
    if (!tl_engine_handshake_done(client) || !tl_engine_handshake_done(server)) {
        fprintf(stderr, "handshake failed: client: %s; server: %s\n", tl_engine_error(client),
                tl_engine_error(server));
        return 1;
    }
    tl_engine_info info;
    tl_engine_get_info(client, &info);
    printf("handshake done: %s %s, server certificate %s\n", info.version, info.cipher,
           info.verify_error);

    /* Application data, then a clean close from the client. */
    send_all(client, "hello, server", &to_server);
    receive_all(server, &to_server, "server");
    send_all(server, "hello, client", &to_client);
    receive_all(client, &to_client, "client");
    tl_engine_close(client);
    send_all(client, NULL, &to_server);
    tl_status st = receive_all(server, &to_server, "server");
    printf("server saw: %s\n", tl_status_name(st)); /* closed: close_notify arrived */

    tl_engine_free(client);
    tl_engine_free(server);
    tl_tls_ctx_free(client_cfg);
    tl_tls_ctx_free(server_cfg);
    tl_certgen_pair_free(&ca);
    tl_certgen_pair_free(&leaf);
    return st == TL_CLOSED ? 0 : 1;
}
