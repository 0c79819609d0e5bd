/* tests/tools/no_uring.c - run a program with io_uring refused: installs the seccomp filter of
 * tests/support/no_uring.h (io_uring_setup fails with EPERM, or the errno given), checks that it
 * bites, then execs the program. The e2e tests run `tlsloop serve --io uring` under it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "support/no_uring.h"

static int usage(void)
{
    fprintf(stderr, "usage: no_uring [--errno EPERM|ENOSYS] [--] PROGRAM [ARG...]\n"
                    "  runs PROGRAM with io_uring_setup failing with that errno (default EPERM)\n");
    return 125;
}

int main(int argc, char **argv)
{
    int err = EPERM, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (strcmp(argv[i], "--errno") != 0 || i + 1 >= argc)
            return usage();
        const char *e = argv[++i];
        if (!strcmp(e, "EPERM"))
            err = EPERM;
        else if (!strcmp(e, "ENOSYS"))
            err = ENOSYS;
        else
            return usage();
    }
    if (i >= argc)
        return usage();
    if (nu_refuse_io_uring(err) != 0) {
        fprintf(stderr, "no_uring: cannot install the seccomp filter: %s\n", strerror(errno));
        return 125;
    }
    /* With no arguments a real io_uring_setup fails with EFAULT or EINVAL; refused, with err. */
    if (syscall(__NR_io_uring_setup, 0, NULL) != -1 || errno != err) {
        fprintf(stderr, "no_uring: io_uring_setup is not refused with %s (the filter does "
                        "not bite: %s)\n", strerror(err), strerror(errno));
        return 125;
    }
    execvp(argv[i], argv + i);
    fprintf(stderr, "no_uring: %s: %s\n", argv[i], strerror(errno));
    return 127;
}
