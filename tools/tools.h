/*
 * tools/tools.h - the subcommands of the tlsloop program. Each is a thin program over the library:
 * it parses its options, runs, and returns the process exit code.
 */
#ifndef TLSLOOP_TOOLS_H
#define TLSLOOP_TOOLS_H

#include <stdio.h>

/* Exit codes shared by every subcommand. */
enum {
    EXIT_OK = 0,
    EXIT_FAILURE_RUN = 1, /* the command ran and failed (TLS error, I/O error) */
    EXIT_USAGE = 2,       /* bad command line */
};

int cmd_serve(int argc, char **argv);
void cmd_serve_usage(FILE *f);
int cmd_get(int argc, char **argv);
void cmd_get_usage(FILE *f);
int cmd_demo(int argc, char **argv);
void cmd_demo_usage(FILE *f);

#endif /* TLSLOOP_TOOLS_H */
