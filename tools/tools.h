/*
 * tools/tools.h - the subcommands of the tlsloop program. Each is a thin program over the library:
 * it parses its options, runs, and returns the process exit code.
 */
#ifndef TLSLOOP_TOOLS_H
#define TLSLOOP_TOOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes shared by every subcommand. */
enum {
    EXIT_OK = 0,
    EXIT_FAILURE_RUN = 1, /* the command ran and failed (TLS error, I/O error) */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_ADDR_IN_USE = 98, /* serve, proxy: another process listens on an address (98 is
                              Linux's EADDRINUSE) */
};

/* An http:// or https:// URL (url.c). */
typedef struct url {
    bool tls;
    char host[256];               /* without brackets */
    uint16_t port;
    char authority[300];          /* the Host header: [v6]:port, port only when not default */
    char target[4096];            /* path and query */
} url;
/* Parse s into u. 0, or -1 with a one-line reason in err. */
int parse_url(const char *s, url *u, char *err, size_t errlen);
/* Resolve a reference (a Location header's value) against base, as RFC 3986 section 5.2 says:
 * an absolute http(s) URL, "//host/path" (the base's scheme), "/path", "path" (merged with the
 * base's directory), "?query", "" (the base itself); "." and ".." segments removed, the fragment
 * dropped. 0, or -1 with a one-line reason in err. */
int resolve_url(const url *base, const char *ref, url *out, char *err, size_t errlen);
/* RFC 3986 section 5.2.4 on a path, in place. */
void remove_dot_segments(char *path);
/* The same scheme, host (any case) and port. */
bool same_origin(const url *a, const url *b);
/* "tlsloop TOOL: <message> (tlsloop TOOL --help lists the options)" on stderr; EXIT_USAGE. */
int tool_usage_error(const char *tool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append "Name: value" and CRLF to buf (a -H option). 0, or -1 when h is not a header line or
 * there is no room. */
int tool_add_header(char *buf, size_t cap, size_t *len, const char *h);

/* The command line of a server subcommand (serve, proxy): server and layer options (--name value),
 * --check (sets *check), --help (prints usage). Returns 0 to go on, 1 when --help was printed, or
 * EXIT_USAGE after printing "tlsloop TOOL: <reason>"; on 1 and EXIT_USAGE cfg is freed. */
struct tl_server_config;
int tool_server_args(const char *tool, struct tl_server_config *cfg, int argc, char **argv,
                     bool *check, void (*usage)(FILE *f));
/* "tlsloop TOOL: msg" on stderr, cfg freed; returns EXIT_USAGE. */
int tool_server_usage_error(const char *tool, struct tl_server_config *cfg, const char *msg);
/* The state directory tlsloop uses when none is given ($XDG_STATE_HOME/tlsloop, else
 * ~/.local/state/tlsloop), with "/sub" after it when sub is not NULL. */
void tool_default_state_dir(char *out, size_t len, const char *sub);

int cmd_serve(int argc, char **argv);
void cmd_serve_usage(FILE *f);
int cmd_proxy(int argc, char **argv);
void cmd_proxy_usage(FILE *f);
int cmd_get(int argc, char **argv);
void cmd_get_usage(FILE *f);
int cmd_bench(int argc, char **argv);
void cmd_bench_usage(FILE *f);
int cmd_demo(int argc, char **argv);
void cmd_demo_usage(FILE *f);
int cmd_ticket_keys(int argc, char **argv);
void cmd_ticket_keys_usage(FILE *f);

#endif /* TLSLOOP_TOOLS_H */
