/* loop_sched.c - short CPU time slices for loop threads (Linux 6.12+, sched_setattr), so that a
 * loop's wake-up preempts a task thread's handshake crypto (docs/design.md, decision 12). */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loop/loop_int.h"
#include "util/tli.h"

/* The kernel clamps a custom slice to this range (kernel/sched/syscalls.c). */
#define SLICE_MIN_NS 100000u
#define SLICE_MAX_NS 100000000u
#define SCHED_FLAG_RESET_ON_FORK 0x01

/* The system call's argument, SCHED_ATTR_SIZE_VER0 (include/uapi/linux/sched/types.h: that header
 * clashes with <sched.h>, and glibc declares its own only from 2.41). */
struct tli_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;   /* runtime: a fair thread's slice */
};
_Static_assert(sizeof(struct tli_sched_attr) == 48, "SCHED_ATTR_SIZE_VER0");

static int get_attr(struct tli_sched_attr *a)
{
    memset(a, 0, sizeof *a);
    return (int)syscall(SYS_sched_getattr, 0, a, (unsigned)sizeof *a, 0u);
}

int tl_thread_set_slice(uint64_t slice_ns, char *err, size_t errlen)
{
    struct tli_sched_attr a;
    if (get_attr(&a) != 0) {
        if (errno == ENOSYS)
            return tli_fmt(err, errlen, "this kernel has no sched_getattr"), 1;
        return tli_fmt(err, errlen, "sched_getattr: %s", strerror(errno)), -1;
    }
    if (a.sched_policy != SCHED_OTHER && a.sched_policy != SCHED_BATCH)
        return tli_fmt(err, errlen, "the thread's scheduling policy (%u) has no fair-share slice",
                       a.sched_policy), 1;
    uint64_t want = slice_ns;
    if (want && want < SLICE_MIN_NS)
        want = SLICE_MIN_NS;
    if (want > SLICE_MAX_NS)
        want = SLICE_MAX_NS;
    a.size = sizeof a;
    a.sched_flags &= SCHED_FLAG_RESET_ON_FORK;   /* keep policy and nice; no utilization clamps */
    a.sched_runtime = want;
    a.sched_deadline = a.sched_period = 0;
    if (syscall(SYS_sched_setattr, 0, &a, 0u) != 0)
        return tli_fmt(err, errlen, "sched_setattr (slice %llu ns): %s",
                       (unsigned long long)want, strerror(errno)), -1;
    /* Kernels before 6.12 accept and ignore sched_runtime for fair threads; they report 0. */
    if (want && (get_attr(&a) != 0 || a.sched_runtime != want))
        return tli_fmt(err, errlen, "this kernel ignores a thread's own time slice (Linux 6.12 "
                       "or later has it)"), 1;
    return 0;
}
