/* tests/support/no_uring.c - a seccomp filter that makes io_uring_setup fail with a given errno
 * (tests/support/no_uring.h); every other system call passes. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "support/no_uring.h"

#if defined(__x86_64__)
#define NU_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NU_ARCH AUDIT_ARCH_AARCH64
#endif

int nu_refuse_io_uring(int err)
{
#ifndef NU_ARCH
    (void)err;
    errno = EINVAL;
    return -1;
#else
    if (err <= 0 || (unsigned)err > SECCOMP_RET_DATA) {
        errno = EINVAL;
        return -1;
    }
    /* Calls of another architecture (32-bit compat) number differently and pass: the programs
     * tested are native. */
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NU_ARCH, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
#endif
}
