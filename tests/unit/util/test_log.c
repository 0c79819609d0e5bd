/* test_log.c - the error log: line format, levels, truncation, escaping, rate limit, rotation,
 * threads. Each test works in its own temporary directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <tlsloop/log.h>

#include "test.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static char dir[64];

static const char *make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/tl_log_test_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        _exit(1);
    }
    return dir;
}

/* Remove the directory and what is in it (one level of subdirectories). */
static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (unlink(p) != 0 && errno == EISDIR)
            remove_tree(p);
    }
    closedir(d);
    rmdir(path);
}

static char *in_dir(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

/* The whole file, NUL-terminated (its length in *len if asked); NULL if it cannot be read. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t r;
    while (s && (r = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *t = realloc(s, cap *= 2);
            if (!t)
                free(s);
            s = t;
        }
    }
    fclose(f);
    if (s)
        s[n] = '\0';
    if (len)
        *len = n;
    return s;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* A clock the test moves by hand. */
static uint64_t fake_clock(void *arg)
{
    return *(uint64_t *)arg;
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ " at the start of s. */
static bool is_timestamp(const char *s)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; pattern[i]; i++) {
        if (pattern[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pattern[i])
            return false;
    }
    return true;
}

/* The descriptor this process has open on path (via /proc), or -1. */
static int find_fd(const char *path)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    struct dirent *e;
    int found = -1;
    char link[512], target[512];
    while ((e = readdir(d)) && found < 0) {
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            if (strcmp(target, path) == 0)
                found = atoi(e->d_name);
        }
    }
    closedir(d);
    return found;
}

/* ---- tests -------------------------------------------------------------------------------- */

TEST(line_format)
{
    make_dir();
    char path[128];
    char err[256] = "";
    tl_log *log = tl_log_open(in_dir(path, sizeof path, "a.log"), err, sizeof err);
    REQUIRE(log);
    uint64_t now = 1700000000123ULL; /* 2023-11-14T22:13:20.123Z */
    tl_log_set_clock(log, fake_clock, &now);
    tl_log_write(log, TL_LOG_ERROR, "hello %d %s", 42, "world");
    now = 1700000000007ULL + 86400000ULL * 366 + 3600000; /* leading zeros of the milliseconds */
    tl_log_write(log, TL_LOG_WARN, "second");
    now = 951782400000ULL; /* 2000-02-29T00:00:00.000Z */
    tl_log_write(log, TL_LOG_INFO, "leap day");
    char *s = slurp(path, NULL);
    CHECK_STR(s, "2023-11-14T22:13:20.123Z [error] hello 42 world\n"
                 "2024-11-14T23:13:20.007Z [warn] second\n"
                 "2000-02-29T00:00:00.000Z [info] leap day\n");
    free(s);

    /* The system clock: a well-formed time within a few seconds of now. */
    tl_log_set_clock(log, NULL, NULL);
    time_t before = time(NULL);
    tl_log_write(log, TL_LOG_INFO, "real time");
    s = slurp(path, NULL);
    REQUIRE(s);
    const char *last = strstr(s, "leap day\n") + strlen("leap day\n");
    CHECK(is_timestamp(last));
    struct tm tm = {0};
    CHECK(strptime(last, "%Y-%m-%dT%H:%M:%S", &tm) != NULL);
    time_t logged = timegm(&tm);
    CHECK(logged >= before - 1 && logged <= time(NULL) + 1);
    CHECK_STR(last + 25, "[info] real time\n");
    free(s);

    /* A new file has mode 0640 (under a umask that allows it). */
    umask(022);
    char path2[128];
    tl_log *log2 = tl_log_open(in_dir(path2, sizeof path2, "b.log"), err, sizeof err);
    REQUIRE(log2);
    struct stat st;
    CHECK(stat(path2, &st) == 0 && (st.st_mode & 0777) == 0640);
    tl_log_free(log2);
    tl_log_free(log);
    remove_tree(dir);
}

/* vwrite through a wrapper of the caller's, as a module with its own log function would do. */
static void my_log(tl_log *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void my_log(tl_log *log, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tl_log_vwrite(log, TL_LOG_WARN, fmt, ap);
    va_end(ap);
}

static int evaluated;
static const char *side_effect(void)
{
    evaluated++;
    return "x";
}

TEST(levels)
{
    make_dir();
    char path[128];
    tl_log *log = tl_log_open(in_dir(path, sizeof path, "a.log"), NULL, 0);
    REQUIRE(log);
    uint64_t now = 0;
    tl_log_set_clock(log, fake_clock, &now);
    CHECK_EQ_INT(tl_log_get_level(log), TL_LOG_INFO); /* the default */
    CHECK(tl_log_enabled(log, TL_LOG_ERROR) && tl_log_enabled(log, TL_LOG_INFO));
    CHECK(!tl_log_enabled(log, TL_LOG_DEBUG));
    tl_log_write(log, TL_LOG_DEBUG, "d1");
    tl_log_write(log, TL_LOG_INFO, "i1");
    tl_log_set_level(log, TL_LOG_DEBUG);
    tl_log_write(log, TL_LOG_DEBUG, "d2");
    tl_log_set_level(log, TL_LOG_ERROR);
    tl_log_write(log, TL_LOG_WARN, "w1");
    my_log(log, "w%d", 2);
    tl_log_write(log, TL_LOG_ERROR, "e1");
    /* Not a level: ignored by set_level, never written. */
    tl_log_set_level(log, (tl_log_level)7);
    CHECK_EQ_INT(tl_log_get_level(log), TL_LOG_ERROR);
    tl_log_write(log, (tl_log_level)7, "bad");
    tl_log_write(log, (tl_log_level)-1, "bad");
    /* TL_LOG evaluates nothing for a disabled level. */
    TL_LOG(log, TL_LOG_DEBUG, "%s", side_effect());
    CHECK_EQ_INT(evaluated, 0);
    tl_log_set_level(log, TL_LOG_WARN);
    TL_LOG(log, TL_LOG_WARN, "macro %s", side_effect());
    my_log(log, "w%d", 3);
    CHECK_EQ_INT(evaluated, 1);

    char *s = slurp(path, NULL);
    CHECK_STR(s, "1970-01-01T00:00:00.000Z [info] i1\n"
                 "1970-01-01T00:00:00.000Z [debug] d2\n"
                 "1970-01-01T00:00:00.000Z [error] e1\n"
                 "1970-01-01T00:00:00.000Z [warn] macro x\n"
                 "1970-01-01T00:00:00.000Z [warn] w3\n");
    free(s);
    tl_log_free(log);
    remove_tree(dir);
}

TEST(parse_level)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        tl_log_level l = (tl_log_level)-1;
        CHECK(tl_log_parse_level(names[i], &l, NULL, 0) == 0);
        CHECK_EQ_INT(l, i);
        CHECK_STR(tl_log_level_name((tl_log_level)i), names[i]);
    }
    tl_log_level l = TL_LOG_INFO;
    CHECK(tl_log_parse_level("DEBUG", &l, NULL, 0) == 0 && l == TL_LOG_DEBUG);
    char err[256];
    l = TL_LOG_INFO;
    CHECK(tl_log_parse_level("verbose", &l, err, sizeof err) == -1);
    CHECK_STR(err, "unknown log level \"verbose\" (expected error, warn, info or debug)");
    CHECK_EQ_INT(l, TL_LOG_INFO);
    CHECK(tl_log_parse_level("", &l, err, sizeof err) == -1);
    CHECK(tl_log_parse_level("warning", &l, err, sizeof err) == -1);
    CHECK(tl_log_parse_level("info ", &l, err, sizeof err) == -1);
    CHECK(tl_log_parse_level(NULL, &l, err, sizeof err) == -1);
    CHECK(strstr(err, "unknown log level") != NULL);
    /* A tiny buffer is still terminated. */
    char small[8];
    CHECK(tl_log_parse_level("nope", &l, small, sizeof small) == -1);
    CHECK_STR(small, "unknown");
    CHECK_STR(tl_log_level_name((tl_log_level)9), "unknown");
}

TEST(truncation)
{
    make_dir();
    char path[128];
    tl_log *log = tl_log_open(in_dir(path, sizeof path, "a.log"), NULL, 0);
    REQUIRE(log);
    uint64_t now = 0;
    tl_log_set_clock(log, fake_clock, &now);
    tl_log_set_rate(log, 0);
    const size_t prefix = strlen("1970-01-01T00:00:00.000Z [info] ");

    /* A message that exactly fills the line is written whole; one byte more is cut. */
    size_t fits = TL_LOG_LINE_MAX - prefix - 1;
    char *big = malloc(10000);
    REQUIRE(big);
    memset(big, 'a', 9999);
    big[9999] = '\0';
    tl_log_write(log, TL_LOG_INFO, "%.*s", (int)fits, big);
    tl_log_write(log, TL_LOG_INFO, "%.*s", (int)fits + 1, big);
    tl_log_write(log, TL_LOG_INFO, "%s", big); /* far beyond the cap */
    /* Escapes are never cut in the middle: 4-byte \x01 escapes up to the cut, then "...". */
    memset(big, 1, 9999);
    tl_log_write(log, TL_LOG_INFO, "%s", big);
    tl_log_write(log, TL_LOG_INFO, "short");

    size_t len;
    char *s = slurp(path, &len);
    REQUIRE(s);
    CHECK_EQ_INT(count_lines(s), 5);
    char *line = s;
    for (int i = 0; i < 5; i++) {
        char *nl = strchr(line, '\n');
        REQUIRE(nl);
        size_t n = (size_t)(nl - line) + 1;
        CHECK(n <= TL_LOG_LINE_MAX);
        CHECK(is_timestamp(line));
        const char *msg = line + prefix;
        size_t mlen = n - 1 - prefix;
        switch (i) {
        case 0: /* whole */
            CHECK_EQ_INT(n, TL_LOG_LINE_MAX);
            CHECK(mlen == fits && msg[mlen - 1] == 'a');
            break;
        case 1:
        case 2: /* cut */
            CHECK_EQ_INT(n, TL_LOG_LINE_MAX);
            CHECK(memcmp(msg + mlen - 4, "a...", 4) == 0);
            break;
        case 3: { /* escapes, cut */
            CHECK(n <= TL_LOG_LINE_MAX && n > TL_LOG_LINE_MAX - 8);
            CHECK(memcmp(msg + mlen - 3, "...", 3) == 0);
            size_t body = mlen - 3;
            CHECK_EQ_INT(body % 4, 0);
            for (size_t j = 0; j < body; j += 4)
                CHECK(memcmp(msg + j, "\\x01", 4) == 0);
            break;
        }
        case 4:
            CHECK(memcmp(msg, "short\n", 6) == 0);
            break;
        }
        line = nl + 1;
    }
    free(s);
    free(big);
    tl_log_free(log);
    remove_tree(dir);
}

TEST(escaping)
{
    make_dir();
    char path[128];
    tl_log *log = tl_log_open(in_dir(path, sizeof path, "a.log"), NULL, 0);
    REQUIRE(log);
    uint64_t now = 0;
    tl_log_set_clock(log, fake_clock, &now);
    /* A peer's SNI trying to start a forged line, colour a terminal, hide behind backslashes. */
    const char *sni = "evil.example\n1970-01-01T00:00:00.000Z [error] forged\r\x1b[31m"
                      "\\x0a\t\x7f\xc3\xa9";
    tl_log_write(log, TL_LOG_WARN, "bad SNI \"%s\"", sni);
    char *s = slurp(path, NULL);
    CHECK_STR(s, "1970-01-01T00:00:00.000Z [warn] bad SNI \"evil.example\\x0a1970-01-01T00:00:"
                 "00.000Z [error] forged\\x0d\\x1b[31m\\x5cx0a\\x09\\x7f\\xc3\\xa9\"\n");
    CHECK_EQ_INT(count_lines(s), 1);
    free(s);
    tl_log_free(log);
    remove_tree(dir);
}

TEST(rate_limit)
{
    make_dir();
    char path[128];
    tl_log *log = tl_log_open(in_dir(path, sizeof path, "a.log"), NULL, 0);
    REQUIRE(log);
    uint64_t now = 5000;
    tl_log_set_clock(log, fake_clock, &now);
    tl_log_set_rate(log, 3);
    for (int i = 0; i < 5; i++) /* 3 written, 2 suppressed */
        tl_log_write(log, TL_LOG_INFO, "a%d", i);
    now = 5999; /* the same second: still over */
    tl_log_write(log, TL_LOG_ERROR, "a5");
    tl_log_write(log, TL_LOG_DEBUG, "filtered, not counted");
    now = 6000; /* a new second: the notice, then the line */
    tl_log_write(log, TL_LOG_INFO, "b0");
    tl_log_write(log, TL_LOG_INFO, "b1");
    now = 4000; /* the clock stepped back: a new window, nothing suppressed to report */
    tl_log_write(log, TL_LOG_INFO, "c0");
    /* Unlimited: 1,000 lines in one millisecond. */
    tl_log_set_rate(log, 0);
    for (int i = 0; i < 1000; i++)
        tl_log_write(log, TL_LOG_INFO, "u%d", i);
    /* Back to a limit: the window holds one more line this second. */
    tl_log_set_rate(log, 2);
    tl_log_write(log, TL_LOG_INFO, "d0");
    tl_log_write(log, TL_LOG_INFO, "d1");
    now = 7000;
    tl_log_write(log, TL_LOG_INFO, "d2");

    char *s = slurp(path, NULL);
    REQUIRE(s);
    CHECK_EQ_INT(count_lines(s), 3 + 2 + 2 + 1000 + 1 + 2);
    const char *head = "1970-01-01T00:00:05.000Z [info] a0\n"
                       "1970-01-01T00:00:05.000Z [info] a1\n"
                       "1970-01-01T00:00:05.000Z [info] a2\n"
                       "1970-01-01T00:00:06.000Z [warn] 3 messages suppressed\n"
                       "1970-01-01T00:00:06.000Z [info] b0\n"
                       "1970-01-01T00:00:06.000Z [info] b1\n"
                       "1970-01-01T00:00:04.000Z [info] c0\n"
                       "1970-01-01T00:00:04.000Z [info] u0\n";
    CHECK(strncmp(s, head, strlen(head)) == 0);
    const char *tail = "1970-01-01T00:00:04.000Z [info] u999\n"
                       "1970-01-01T00:00:04.000Z [info] d0\n"
                       "1970-01-01T00:00:07.000Z [warn] 1 message suppressed\n"
                       "1970-01-01T00:00:07.000Z [info] d2\n";
    CHECK(strlen(s) > strlen(tail) && strcmp(s + strlen(s) - strlen(tail), tail) == 0);
    free(s);
    tl_log_free(log);
    remove_tree(dir);
}

TEST(reopen_after_rename)
{
    make_dir();
    char path[128], rotated[128];
    in_dir(path, sizeof path, "a.log");
    in_dir(rotated, sizeof rotated, "a.log.1");
    char err[256] = "";
    tl_log *log = tl_log_open(path, err, sizeof err);
    REQUIRE(log);
    tl_log_write(log, TL_LOG_INFO, "first");
    REQUIRE(rename(path, rotated) == 0);
    tl_log_write(log, TL_LOG_INFO, "second"); /* still the renamed file, as logrotate expects */
    CHECK(tl_log_reopen(log, err, sizeof err) == 0);
    tl_log_write(log, TL_LOG_INFO, "third");

    char *old = slurp(rotated, NULL), *cur = slurp(path, NULL);
    REQUIRE(old && cur);
    CHECK(strstr(old, "] first\n") && strstr(old, "] second\n") && !strstr(old, "third"));
    CHECK_EQ_INT(count_lines(old), 2);
    CHECK(strstr(cur, "[info] third\n") && count_lines(cur) == 1);
    free(old);
    free(cur);
    /* The new file is on a close-on-exec descriptor too (dup2 would have lost the flag). */
    int fd = find_fd(path);
    CHECK(fd >= 0);
    CHECK(find_fd(rotated) < 0); /* the old file is closed */
    CHECK(fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC));
    /* Reopening the same file again is harmless. */
    CHECK(tl_log_reopen(log, err, sizeof err) == 0);
    tl_log_write(log, TL_LOG_INFO, "fourth");
    cur = slurp(path, NULL);
    CHECK(cur && count_lines(cur) == 2);
    free(cur);
    tl_log_free(log);
    CHECK(find_fd(path) < 0);
    remove_tree(dir);
}

TEST(reopen_failure_keeps_file)
{
    make_dir();
    char sub[128], path[160], moved[128], moved_path[160];
    in_dir(sub, sizeof sub, "logs");
    REQUIRE(mkdir(sub, 0700) == 0);
    snprintf(path, sizeof path, "%s/a.log", sub);
    in_dir(moved, sizeof moved, "logs.old");
    snprintf(moved_path, sizeof moved_path, "%s/a.log", moved);
    tl_log *log = tl_log_open(path, NULL, 0);
    REQUIRE(log);
    tl_log_write(log, TL_LOG_INFO, "before");
    /* The directory goes away, so the path cannot be opened again (whoever runs the test). */
    REQUIRE(rename(sub, moved) == 0);
    char err[256] = "";
    CHECK(tl_log_reopen(log, err, sizeof err) == -1);
    char want[300];
    snprintf(want, sizeof want, "reopen %s: %s", path, strerror(ENOENT));
    CHECK_STR(err, want);
    CHECK(tl_log_reopen(log, NULL, 0) == -1); /* no buffer: still fine */
    tl_log_write(log, TL_LOG_INFO, "after");
    char *s = slurp(moved_path, NULL);
    REQUIRE(s);
    CHECK(strstr(s, "] before\n") && strstr(s, "] after\n") && count_lines(s) == 2);
    free(s);
    tl_log_free(log);
    remove_tree(dir);
}

TEST(open_failure)
{
    char err[256] = "";
    CHECK(tl_log_open("/nonexistent-dir-tl-log/x.log", err, sizeof err) == NULL);
    char want[300];
    snprintf(want, sizeof want, "open /nonexistent-dir-tl-log/x.log: %s", strerror(ENOENT));
    CHECK_STR(err, want);
    CHECK(tl_log_open("", NULL, 0) == NULL);
}

TEST(stderr_log)
{
    make_dir();
    char path[128];
    /* Point this (forked) test's stderr at a file, so that what the log writes can be read. */
    int fd = open(in_dir(path, sizeof path, "stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    int saved = dup(2);
    REQUIRE(saved >= 0 && dup2(fd, 2) == 2);
    close(fd);
    const char *names[] = {NULL, "-", "stderr"};
    for (int i = 0; i < 3; i++) {
        tl_log *log = tl_log_open(names[i], NULL, 0);
        if (!log)
            continue;
        tl_log_write(log, TL_LOG_ERROR, "via %s", names[i] ? names[i] : "NULL");
        CHECK(tl_log_reopen(log, NULL, 0) == 0); /* nothing to reopen */
        tl_log_free(log);
        CHECK(fcntl(2, F_GETFD) >= 0); /* stderr stays open */
    }
    dup2(saved, 2);
    close(saved);
    char *s = slurp(path, NULL);
    REQUIRE(s);
    CHECK_EQ_INT(count_lines(s), 3);
    CHECK(strstr(s, "[error] via NULL\n") && strstr(s, "[error] via -\n") &&
          strstr(s, "[error] via stderr\n"));
    free(s);
    remove_tree(dir);
}

TEST(null_log)
{
    tl_log_write(NULL, TL_LOG_ERROR, "nothing %d", 1);
    TL_LOG(NULL, TL_LOG_ERROR, "nothing %s", side_effect());
    CHECK_EQ_INT(evaluated, 0);
    CHECK(!tl_log_enabled(NULL, TL_LOG_ERROR));
    CHECK(tl_log_reopen(NULL, NULL, 0) == 0);
    tl_log_set_level(NULL, TL_LOG_DEBUG);
    tl_log_set_rate(NULL, 5);
    tl_log_set_clock(NULL, fake_clock, NULL);
    CHECK_EQ_INT(tl_log_get_level(NULL), TL_LOG_ERROR);
    my_log(NULL, "nothing");
    tl_log_free(NULL);
}

TEST(errno_preserved)
{
    make_dir();
    char path[128];
    tl_log *log = tl_log_open(in_dir(path, sizeof path, "a.log"), NULL, 0);
    REQUIRE(log);
    errno = EACCES;
    tl_log_write(log, TL_LOG_ERROR, "open: %m");
    CHECK_EQ_INT(errno, EACCES);
    tl_log_set_rate(log, 1);
    errno = EPIPE;
    tl_log_write(log, TL_LOG_ERROR, "suppressed"); /* the rate may drop it: errno is kept anyway */
    CHECK_EQ_INT(errno, EPIPE);
    char *s = slurp(path, NULL);
    char want[128];
    snprintf(want, sizeof want, "[error] open: %s\n", strerror(EACCES));
    CHECK(s && strstr(s, want));
    free(s);
    tl_log_free(log);
    remove_tree(dir);
}

/* ---- threads ------------------------------------------------------------------------------ */

#define THREADS 8
#define LINES_TOTAL 10000

typedef struct writer {
    tl_log *log;
    int id, lines;
} writer;

/* Long lines (~1.5 KiB) with a known body, so a line cut or mixed with another shows. */
static void *write_lines(void *arg)
{
    writer *w = arg;
    char pad[1400];
    memset(pad, 'a' + w->id, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < w->lines; i++)
        tl_log_write(w->log, TL_LOG_INFO, "t%d n%05d %s end", w->id, i, pad);
    return NULL;
}

/* Check every line of s; mark each (thread, number) seen in seen[]. Returns lines checked. */
static int check_lines(const char *s, unsigned char *seen, int per_thread, int *bad)
{
    int n = 0;
    const char *prefix_end = "[info] ";
    while (*s) {
        const char *nl = strchr(s, '\n');
        if (!nl) {
            (*bad)++;
            break;
        }
        n++;
        int id = -1, num = -1, used = 0;
        const char *msg = s + 25 + strlen(prefix_end);
        if (!is_timestamp(s) || strncmp(s + 25, prefix_end, strlen(prefix_end)) != 0 ||
            sscanf(msg, "t%d n%d %n", &id, &num, &used) != 2 || id < 0 || id >= THREADS ||
            num < 0 || num >= per_thread) {
            (*bad)++;
        } else {
            const char *p = msg + used;
            size_t body = 0;
            while (p + body < nl && p[body] == 'a' + id)
                body++;
            if (body != 1399 || strncmp(p + body, " end\n", 5) != 0 || p + body + 4 != nl)
                (*bad)++;
            else
                seen[id * per_thread + num]++;
        }
        s = nl + 1;
    }
    return n;
}

TEST(threads_no_interleaving)
{
    make_dir();
    char path[128];
    tl_log *log = tl_log_open(in_dir(path, sizeof path, "a.log"), NULL, 0);
    REQUIRE(log);
    tl_log_set_rate(log, 0);
    int per = LINES_TOTAL / THREADS * tests_scale();
    writer w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (writer){log, i, per};
        REQUIRE(pthread_create(&t[i], NULL, write_lines, &w[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    tl_log_free(log);

    char *s = slurp(path, NULL);
    REQUIRE(s);
    unsigned char *seen = calloc((size_t)THREADS * per, 1);
    REQUIRE(seen);
    int bad = 0;
    CHECK_EQ_INT(check_lines(s, seen, per, &bad), THREADS * per);
    CHECK_EQ_INT(bad, 0);
    int once = 0;
    for (int i = 0; i < THREADS * per; i++)
        once += seen[i] == 1;
    CHECK_EQ_INT(once, THREADS * per);
    free(seen);
    free(s);
    remove_tree(dir);
}

/* Writers keep writing while the main thread rotates the file again and again: every line is in
 * exactly one of the files, whole. */
TEST(threads_reopen_while_writing)
{
    make_dir();
    char path[128];
    tl_log *log = tl_log_open(in_dir(path, sizeof path, "a.log"), NULL, 0);
    REQUIRE(log);
    tl_log_set_rate(log, 0);
    int per = LINES_TOTAL / THREADS * tests_scale();
    writer w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (writer){log, i, per};
        REQUIRE(pthread_create(&t[i], NULL, write_lines, &w[i]) == 0);
    }
    int rotations = 0;
    char rotated[160], err[256];
    for (; rotations < 50; rotations++) {
        snprintf(rotated, sizeof rotated, "%s.%d", path, rotations);
        REQUIRE(rename(path, rotated) == 0);
        CHECK(tl_log_reopen(log, err, sizeof err) == 0);
        struct timespec ts = {0, 200000}; /* let some lines land in each file */
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    tl_log_free(log);

    unsigned char *seen = calloc((size_t)THREADS * per, 1);
    REQUIRE(seen);
    int bad = 0, lines = 0;
    for (int r = 0; r <= rotations; r++) {
        if (r < rotations)
            snprintf(rotated, sizeof rotated, "%s.%d", path, r);
        char *s = slurp(r < rotations ? rotated : path, NULL);
        REQUIRE(s);
        lines += check_lines(s, seen, per, &bad);
        free(s);
    }
    CHECK_EQ_INT(lines, THREADS * per);
    CHECK_EQ_INT(bad, 0);
    int once = 0;
    for (int i = 0; i < THREADS * per; i++)
        once += seen[i] == 1;
    CHECK_EQ_INT(once, THREADS * per);
    free(seen);
    remove_tree(dir);
}

/* The rate limit under threads: exactly `rate` lines pass in one second, whoever writes them. */
typedef struct rate_writer {
    tl_log *log;
    int lines;
} rate_writer;

static void *write_fast(void *arg)
{
    rate_writer *w = arg;
    for (int i = 0; i < w->lines; i++)
        tl_log_write(w->log, TL_LOG_INFO, "x");
    return NULL;
}

TEST(threads_rate_exact)
{
    make_dir();
    char path[128];
    tl_log *log = tl_log_open(in_dir(path, sizeof path, "a.log"), NULL, 0);
    REQUIRE(log);
    uint64_t now = 42000;
    tl_log_set_clock(log, fake_clock, &now);
    tl_log_set_rate(log, 500);
    rate_writer w = {log, 1000};
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        REQUIRE(pthread_create(&t[i], NULL, write_fast, &w) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    now = 43000;
    tl_log_write(log, TL_LOG_INFO, "next");
    tl_log_free(log);
    char *s = slurp(path, NULL);
    REQUIRE(s);
    CHECK_EQ_INT(count_lines(s), 500 + 2);
    char want[128];
    snprintf(want, sizeof want, "[warn] %d messages suppressed\n", THREADS * 1000 - 500);
    CHECK(strstr(s, want) != NULL);
    free(s);
    remove_tree(dir);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(line_format);
    RUN(levels);
    RUN(parse_level);
    RUN(truncation);
    RUN(escaping);
    RUN(rate_limit);
    RUN(reopen_after_rename);
    RUN(reopen_failure_keeps_file);
    RUN(open_failure);
    RUN(stderr_log);
    RUN(null_log);
    RUN(errno_preserved);
    RUN(threads_no_interleaving);
    RUN(threads_reopen_while_writing);
    RUN(threads_rate_exact);
    TEST_MAIN_END();
}
