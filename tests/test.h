/*
 * tests/test.h - the tiny test framework of tlsloop's unit and integration tests.
 *
 * A test file defines functions with TEST(name) and lists them in main with RUN(name). Each test
 * runs in a forked child process with an alarm (TEST_TIMEOUT seconds, default 60): a crash, an
 * abort or a hang fails that test and the file goes on. CHECK* record a failure and go on; REQUIRE*
 * end the test at once. The file ends with TEST_MAIN_END, which prints the closing line
 * "N passed, N failed" that tests/run.sh adds up, and exits non-zero if anything failed.
 *
 * Run one test by name: ./test_engine name
 *
 * Soak: with SOAK=1 in the environment (make soak), tests_scale() returns SOAK_SCALE (default 50)
 * instead of 1; tests multiply their counts by it, and the time limit grows by the same factor.
 */
#ifndef TLSLOOP_TEST_H
#define TLSLOOP_TEST_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TEST_TIMEOUT
#define TEST_TIMEOUT 60
#endif

/* Under LeakSanitizer a forked test ends with _exit, which skips the exit-time leak check: run it
 * explicitly. The weak reference is NULL in builds without the sanitizer. */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static int test_failures_;     /* failures inside the running test (child process) */

/* 1 normally; larger under make soak (SOAK=1, SOAK_SCALE=N). */
static inline int tests_scale(void)
{
    const char *soak = getenv("SOAK");
    if (!soak || strcmp(soak, "1") != 0)
        return 1;
    const char *n = getenv("SOAK_SCALE");
    int scale = n ? atoi(n) : 50;
    return scale > 0 ? scale : 1;
}
static int test_passed_, test_failed_;
static const char *test_only_;

#define TEST(name) static void test_##name(void)

#define CHECK(cond)                                                                             \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
            test_failures_++;                                                                   \
        }                                                                                       \
    } while (0)

#define REQUIRE(cond)                                                                           \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "  %s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);         \
            fflush(stderr);                                                                     \
            _exit(1);                                                                           \
        }                                                                                       \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                      \
    do {                                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                                      \
        if (a_ != b_) {                                                                         \
            fprintf(stderr, "  %s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__,        \
                    __LINE__, #a, #b, a_, b_);                                                   \
            test_failures_++;                                                                   \
        }                                                                                       \
    } while (0)

#define CHECK_STR(a, b)                                                                         \
    do {                                                                                        \
        const char *a_ = (a), *b_ = (b);                                                        \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                \
            fprintf(stderr, "  %s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__,    \
                    __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                  \
            test_failures_++;                                                                   \
        }                                                                                       \
    } while (0)

/* s contains sub. */
#define CHECK_HAS(s, sub)                                                                       \
    do {                                                                                        \
        const char *s_ = (s), *sub_ = (sub);                                                    \
        if (!s_ || !strstr(s_, sub_)) {                                                         \
            fprintf(stderr, "  %s:%d: CHECK failed: %s contains \"%s\" (it is \"%s\")\n",        \
                    __FILE__, __LINE__, #s, sub_, s_ ? s_ : "(null)");                          \
            test_failures_++;                                                                   \
        }                                                                                       \
    } while (0)

static void test_run_(const char *name, void (*fn)(void))
{
    if (test_only_ && strcmp(test_only_, name) != 0)
        return;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        test_failed_++;
        return;
    }
    if (pid == 0) {
        alarm((unsigned)(TEST_TIMEOUT * tests_scale()));
        test_failures_ = 0;
        fn();
        if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check() != 0) {
            fprintf(stderr, "  %s: memory leaked (see the LeakSanitizer report above)\n", name);
            test_failures_++;
        }
        fflush(stderr);
        _exit(test_failures_ ? 1 : 0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        printf("ok   %s\n", name);
        test_passed_++;
    } else {
        if (WIFSIGNALED(st))
            printf("FAIL %s (signal %d%s)\n", name, WTERMSIG(st),
                   WTERMSIG(st) == SIGALRM ? ": timed out" : "");
        else
            printf("FAIL %s\n", name);
        test_failed_++;
    }
}

#define TEST_MAIN_BEGIN(argc, argv)                                                             \
    do {                                                                                        \
        setvbuf(stdout, NULL, _IOLBF, 0);                                                       \
        if ((argc) > 1)                                                                         \
            test_only_ = (argv)[1];                                                             \
    } while (0)

#define RUN(name) test_run_(#name, test_##name)

#define TEST_MAIN_END()                                                                         \
    do {                                                                                        \
        printf("%d passed, %d failed\n", test_passed_, test_failed_);                           \
        return test_failed_ ? 1 : 0;                                                            \
    } while (0)

#endif /* TLSLOOP_TEST_H */
