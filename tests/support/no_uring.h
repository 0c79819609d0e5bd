/*
 * tests/support/no_uring.h - refuse io_uring to this process and what it starts: a seccomp filter
 * that makes io_uring_setup fail with a chosen errno, as a container's profile (EPERM) or a kernel
 * built without io_uring (ENOSYS) does. Used in-process by tests/unit/loop/test_loop_backend.c and
 * around a whole program by tests/tools/no_uring.c.
 */
#ifndef TLSLOOP_NO_URING_H
#define TLSLOOP_NO_URING_H

/* Install the filter (after PR_SET_NO_NEW_PRIVS, so no privilege is needed). It lasts for the
 * process and is inherited across fork and exec; it cannot be taken off. Returns 0, or -1 with
 * errno set (EINVAL also on an architecture the filter does not know). */
int nu_refuse_io_uring(int err);

#endif /* TLSLOOP_NO_URING_H */
