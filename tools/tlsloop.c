/* tlsloop.c - the tlsloop program: one binary, one subcommand per job. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <tlsloop/api.h>

#include "tools.h"

typedef struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *f);
} command;

static const command COMMANDS[] = {
    {"serve", "a static HTTPS/HTTP server (no options: https://localhost:8443/)", cmd_serve,
     cmd_serve_usage},
    {"proxy", "TLS termination in front of TCP backends (round-robin, half-close carried)",
     cmd_proxy, cmd_proxy_usage},
    {"get", "fetch an http:// or https:// URL, verifying TLS (exit codes for scripts)", cmd_get,
     cmd_get_usage},
    {"bench", "a TLS load generator: full vs resumed handshakes, latency at a fixed rate",
     cmd_bench, cmd_bench_usage},
    {"ticket-keys", "make, rotate and check a ticket key file shared by several instances",
     cmd_ticket_keys, cmd_ticket_keys_usage},
    {"demo", "two TLS engines talking through memory, step by step (no sockets)", cmd_demo,
     cmd_demo_usage},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: tlsloop <command> [options]\n"
               "       tlsloop help <command>\n"
               "       tlsloop --version\n\n"
               "tlsloop is asynchronous, non-blocking TLS for Linux on OpenSSL 3.\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-11s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n`tlsloop help COMMAND` (or COMMAND --help) lists a command's options.\n\n"
               "TLS keys and libssl's HMACs come from OpenSSL's own TLS1-PRF, TLS13-KDF and HMAC;\n"
               "--tls-kdf tlsloop (serve, proxy, get, bench) opts in to tlsloop's faster ones\n"
               "(docs/design.md, decision 10).\n");
}

static const command *find(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0)
            return &COMMANDS[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *arg = argv[1];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(arg, "--version") == 0 || strcmp(arg, "version") == 0) {
        printf("tlsloop %s (%s)\n", TL_VERSION_STRING, OpenSSL_version(OPENSSL_VERSION));
        return EXIT_OK;
    }
    if (strcmp(arg, "help") == 0) {
        const command *c = argc > 2 ? find(argv[2]) : NULL;
        if (argc > 2 && !c) {
            fprintf(stderr, "tlsloop: no command '%s' (try 'tlsloop --help')\n", argv[2]);
            return EXIT_USAGE;
        }
        if (c)
            c->usage(stdout);
        else
            usage(stdout);
        return EXIT_OK;
    }
    const command *c = find(arg);
    if (!c) {
        fprintf(stderr, "tlsloop: no command '%s' (try 'tlsloop --help')\n", arg);
        return EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
