/* server_args.c - the command line shared by the server subcommands (serve, proxy). */
#include <stdlib.h>
#include <string.h>

#include <tlsloop/server.h>

#include "tools.h"

int tool_server_usage_error(const char *tool, tl_server_config *cfg, const char *msg)
{
    fprintf(stderr, "tlsloop %s: %s\n", tool, msg);
    tl_server_config_free(cfg);
    return EXIT_USAGE;
}

int tool_server_args(const char *tool, tl_server_config *cfg, int argc, char **argv, bool *check,
                     void (*usage)(FILE *f))
{
    char err[1024];
    for (int i = 1; i < argc;) {
        if (tl_server_config_args(cfg, argc, argv, &i, err, sizeof err) != 0)
            return tool_server_usage_error(tool, cfg, err);
        if (i >= argc)
            break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            tl_server_config_free(cfg);
            return 1;
        }
        if (!strcmp(argv[i], "--check")) {
            *check = true;
            i++;
            continue;
        }
        snprintf(err, sizeof err, "unknown %s %s (tlsloop %s --help lists the options)",
                 argv[i][0] == '-' ? "option" : "argument", argv[i], tool);
        return tool_server_usage_error(tool, cfg, err);
    }
    return 0;
}

void tool_default_state_dir(char *out, size_t len, const char *sub)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(out, len, "%s/tlsloop%s%s", xdg, sub ? "/" : "", sub ? sub : "");
    else
        snprintf(out, len, "%s/.local/state/tlsloop%s%s", home && *home ? home : "/tmp",
                 sub ? "/" : "", sub ? sub : "");
}
