/* log.c - the error log: formatting, escaping, rate limiting and rotation (tlsloop/log.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <tlsloop/log.h>

#define OPEN_FLAGS (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY)
#define OPEN_MODE 0640
/* Room for the "N messages suppressed" line that may precede a line in the same write. */
#define NOTICE_MAX 128
/* Room put_prefix may use. */
#define PREFIX_MAX 64

struct tl_log {
    struct tli_log_head head; /* first: tl_log_enabled reads the level through it */
    int fd;                   /* never changes: reopening swaps the file behind it */
    bool own_fd;              /* false for stderr */
    char *path;               /* NULL for stderr */
    _Atomic unsigned rate;    /* lines per second, 0 = unlimited */
    /* The rate window in one word, so admission is one compare-and-swap: the window's second
     * (low 32 bits of it) above, lines admitted in it below. */
    _Atomic uint64_t window;
    _Atomic uint64_t dropped; /* lines not written since the last line that was */
    uint64_t (*clock)(void *arg);
    void *clock_arg;
};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static void set_err(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(buf, len, fmt, ap) < 0)
        buf[0] = '\0';
    va_end(ap);
}

static uint64_t system_clock(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

tl_log *tl_log_open(const char *path, char *errbuf, size_t errlen)
{
    bool use_stderr = !path || strcmp(path, "-") == 0 || strcmp(path, "stderr") == 0;
    tl_log *log = calloc(1, sizeof *log);
    if (!log || (!use_stderr && !(log->path = strdup(path)))) {
        free(log);
        set_err(errbuf, errlen, "log: out of memory");
        return NULL;
    }
    if (use_stderr) {
        /* Used as is, not duplicated: a program that later points stderr elsewhere (a daemon
         * redirecting it to a file) takes the log along. */
        log->fd = STDERR_FILENO;
    } else {
        log->fd = open(path, OPEN_FLAGS, OPEN_MODE);
        if (log->fd < 0) {
            set_err(errbuf, errlen, "open %s: %s", path, strerror(errno));
            free(log->path);
            free(log);
            return NULL;
        }
        log->own_fd = true;
    }
    log->head.level = TL_LOG_INFO;
    atomic_init(&log->rate, TL_LOG_DEFAULT_RATE);
    atomic_init(&log->window, 0);
    atomic_init(&log->dropped, 0);
    log->clock = system_clock;
    return log;
}

void tl_log_free(tl_log *log)
{
    if (!log)
        return;
    if (log->own_fd)
        close(log->fd);
    free(log->path);
    free(log);
}

int tl_log_reopen(tl_log *log, char *errbuf, size_t errlen)
{
    if (!log || !log->path)
        return 0;
    int fd = open(log->path, OPEN_FLAGS, OPEN_MODE);
    if (fd < 0) {
        set_err(errbuf, errlen, "reopen %s: %s", log->path, strerror(errno));
        return -1;
    }
    /* dup3 replaces the file behind log->fd in one step: writers on other threads always hold a
     * valid descriptor, and one that is inside write() keeps its file alive until it returns.
     * dup3 rather than dup2 because dup2 would clear close-on-exec. */
    if (dup3(fd, log->fd, O_CLOEXEC) < 0) {
        set_err(errbuf, errlen, "reopen %s: %s", log->path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

void tl_log_set_level(tl_log *log, tl_log_level level)
{
    if (log && (unsigned)level <= TL_LOG_DEBUG)
        __atomic_store_n(&log->head.level, (int)level, __ATOMIC_RELAXED);
}

tl_log_level tl_log_get_level(const tl_log *log)
{
    return log ? (tl_log_level)__atomic_load_n(&log->head.level, __ATOMIC_RELAXED) : TL_LOG_ERROR;
}

const char *tl_log_level_name(tl_log_level level)
{
    return (unsigned)level <= TL_LOG_DEBUG ? level_names[level] : "unknown";
}

int tl_log_parse_level(const char *s, tl_log_level *level, char *errbuf, size_t errlen)
{
    for (unsigned i = 0; s && i <= TL_LOG_DEBUG; i++)
        if (strcasecmp(s, level_names[i]) == 0) {
            *level = (tl_log_level)i;
            return 0;
        }
    /* %.40s: the text may come from anywhere; the message only needs to show which it was. */
    set_err(errbuf, errlen, "unknown log level \"%.40s\" (expected error, warn, info or debug)",
            s ? s : "");
    return -1;
}

void tl_log_set_rate(tl_log *log, unsigned lines_per_second)
{
    if (log)
        atomic_store_explicit(&log->rate, lines_per_second, memory_order_relaxed);
}

void tl_log_set_clock(tl_log *log, uint64_t (*now_ms)(void *arg), void *arg)
{
    if (!log)
        return;
    log->clock = now_ms ? now_ms : system_clock;
    log->clock_arg = now_ms ? arg : NULL;
}

/* May one more line be written in the second of now_ms? */
static bool admit(tl_log *log, uint64_t now_ms)
{
    unsigned rate = atomic_load_explicit(&log->rate, memory_order_relaxed);
    if (rate == 0)
        return true;
    uint64_t second = (uint32_t)(now_ms / 1000);
    uint64_t cur = atomic_load_explicit(&log->window, memory_order_relaxed);
    for (;;) {
        uint64_t next;
        if (cur >> 32 != second) /* a new window; also when the clock stepped back */
            next = second << 32 | 1;
        else if ((uint32_t)cur < rate)
            next = cur + 1;
        else
            return false;
        if (atomic_compare_exchange_weak_explicit(&log->window, &cur, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    }
}

/* "2024-05-01T12:34:56.789Z [level] " at p (PREFIX_MAX bytes of room). Returns its length. */
static size_t put_prefix(char *p, uint64_t now_ms, tl_log_level level)
{
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        memset(&tm, 0, sizeof tm);
    int n = snprintf(p, PREFIX_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ [%s] ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (unsigned)(now_ms % 1000), tl_log_level_name(level));
    return n < 0 ? 0 : n >= PREFIX_MAX ? PREFIX_MAX - 1 : (size_t)n;
}

static bool is_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '\\';
}

/* Append msg to the line at out[n], escaped, and the newline, never passing out[cap]. When msg
 * does not fit, or `cut` says it was already cut short, it ends with "..." instead, after whole
 * escapes only. Returns the line's new length. */
static size_t put_message(char *out, size_t n, size_t cap, const char *msg, size_t len, bool cut)
{
    static const char hex[] = "0123456789abcdef";
    size_t limit = cap - 1; /* the newline's place */
    size_t keep = 0;        /* where "..." goes if it is needed */
    bool keep_set = false;
    size_t i = 0;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)msg[i];
        size_t w = is_plain(c) ? 1 : 4;
        if (!keep_set && n + w > limit - 3) {
            keep = n;
            keep_set = true;
        }
        if (n + w > limit)
            break;
        if (w == 1) {
            out[n++] = (char)c;
        } else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (i < len || cut) {
        n = keep_set ? keep : n; /* not set: everything fit below limit - 3 */
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n++] = '\n';
    return n;
}

/* One write() for the whole buffer (a line, or a notice and a line); the loop only finishes a
 * write that a signal or a full disk cut short. */
static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

void tl_log_vwrite(tl_log *log, tl_log_level level, const char *fmt, va_list ap)
{
    /* Before anything else: a disabled level costs one atomic load. */
    if (!tl_log_enabled(log, level))
        return;
    int saved_errno = errno;
    uint64_t now = log->clock(log->clock_arg);
    if (!admit(log, now)) {
        atomic_fetch_add_explicit(&log->dropped, 1, memory_order_relaxed);
        errno = saved_errno;
        return;
    }
    /* The message can only grow by escaping, so a TL_LOG_LINE_MAX buffer holds all of it that
     * can appear in the line. */
    char msg[TL_LOG_LINE_MAX];
    errno = saved_errno; /* for "%m", whatever the clock did */
    int mlen = vsnprintf(msg, sizeof msg, fmt, ap);
    bool cut = mlen >= (int)sizeof msg;
    size_t len = mlen < 0 ? 0 : cut ? sizeof msg - 1 : (size_t)mlen;

    char line[NOTICE_MAX + TL_LOG_LINE_MAX];
    size_t n = 0;
    uint64_t dropped = atomic_exchange_explicit(&log->dropped, 0, memory_order_relaxed);
    if (dropped) {
        n = put_prefix(line, now, TL_LOG_WARN);
        int w = snprintf(line + n, NOTICE_MAX - n, "%llu message%s suppressed\n",
                         (unsigned long long)dropped, dropped == 1 ? "" : "s");
        n = w > 0 && (size_t)w < NOTICE_MAX - n ? n + (size_t)w : 0; /* cannot fail: 20 digits */
    }
    char *l = line + n;
    n += put_message(l, put_prefix(l, now, level), TL_LOG_LINE_MAX, msg, len, cut);
    if (!write_all(log->fd, line, n))
        atomic_fetch_add_explicit(&log->dropped, dropped + 1, memory_order_relaxed);
    errno = saved_errno;
}

void tl_log_write(tl_log *log, tl_log_level level, const char *fmt, ...)
{
    if (!tl_log_enabled(log, level))
        return;
    va_list ap;
    va_start(ap, fmt);
    tl_log_vwrite(log, level, fmt, ap);
    va_end(ap);
}
