/*
 * tlsloop/log.h - the server's error log: one line per event, written to a file or to stderr.
 *
 * A tl_log is an object, never a global: whoever runs the process (main) opens one and passes it
 * to what should log. Every function accepts a NULL log and then does nothing, so a library
 * function can take an optional log.
 *
 * A line is "2024-05-01T12:34:56.789Z [error] message\n": the UTC time in milliseconds, the
 * level, the message. Each line (with its newline) is at most TL_LOG_LINE_MAX bytes; a longer
 * message is cut and ends with "...". Every byte of the message outside printable ASCII, and the
 * backslash, is written as \xNN, so text a peer chose (an SNI name, a header) can neither forge a
 * line nor send escape sequences to a terminal, and the escaping stays unambiguous.
 *
 * Lines from many threads never mix: each is written with one write() on an O_APPEND descriptor,
 * and TL_LOG_LINE_MAX is below PIPE_BUF, so this holds for a pipe as stderr too.
 *
 * Levels: error < warn < info < debug; a log writes the lines at its level and below (default
 * info). tl_log_enabled (and the TL_LOG macro) answer with one atomic load, so a disabled line
 * costs no formatting and no argument evaluation.
 *
 * Rate limit: at most `rate` lines per second of the log's clock (default TL_LOG_DEFAULT_RATE,
 * 0 = unlimited), counted in whole-second windows. It applies to every level, errors included:
 * a peer can provoke errors at will (failed handshakes), and flooding the disk must not be one of
 * its powers. Lines over the limit are counted, and the next line written is preceded by
 * "N messages suppressed" (at warn), in the same write. Lines lost because write() failed (disk
 * full) are counted the same way.
 *
 * Rotation: after logrotate renamed the file (and sent SIGUSR1), tl_log_reopen opens the path
 * again and puts the new file on the same descriptor number with dup3, which the kernel does
 * atomically: a write running on another thread at that moment goes wholly to the old file or
 * wholly to the new one, and no thread can ever write to a closed or reused descriptor.
 *
 * Threads: tl_log_write, tl_log_vwrite, tl_log_enabled, tl_log_reopen, tl_log_set_level and
 * tl_log_set_rate may be called from any number of threads at once. tl_log_set_clock must be
 * called before the log is shared; tl_log_free once nothing else uses the log.
 * Errors: tl_log_open and tl_log_reopen give the reason in errbuf (may be NULL; errlen bytes at
 * most, always terminated). Writing never fails visibly, never blocks on a lock, and leaves errno
 * as it was (so "%m" and a caller's later errno check both work).
 */
#ifndef TLSLOOP_LOG_H
#define TLSLOOP_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tlsloop/api.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TL_LOG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define TL_LOG_PRINTF(fmt, args)
#endif

/* Longest line, newline included (below PIPE_BUF, 4096 on Linux: see above). */
#define TL_LOG_LINE_MAX 2048
/* Lines per second a new log writes at most. */
#define TL_LOG_DEFAULT_RATE 100

typedef enum tl_log_level {
    TL_LOG_ERROR = 0,
    TL_LOG_WARN,
    TL_LOG_INFO,
    TL_LOG_DEBUG,
} tl_log_level;

typedef struct tl_log tl_log;

/* Open a log appending to the file at path (created with mode 0640 if missing; close-on-exec),
 * or on stderr when path is NULL, "-" or "stderr" (never closed by the log). Level info, rate
 * TL_LOG_DEFAULT_RATE. NULL with the reason in errbuf when the file cannot be opened. */
TL_API tl_log *tl_log_open(const char *path, char *errbuf, size_t errlen);
/* Close the file (not stderr) and free the log. NULL is a no-op. */
TL_API void tl_log_free(tl_log *log);
/* Open the path again and write to the new file from now on (after a rotation). Returns 0 (also
 * for a NULL or stderr log), or -1 with the reason in errbuf; then the log goes on writing to the
 * file it had. */
TL_API int tl_log_reopen(tl_log *log, char *errbuf, size_t errlen);

/* Write the lines at level and below from now on. A value outside tl_log_level is ignored. */
TL_API void tl_log_set_level(tl_log *log, tl_log_level level);
/* The current level (TL_LOG_ERROR for a NULL log). */
TL_API tl_log_level tl_log_get_level(const tl_log *log);
/* "error", "warn", "info", "debug"; "unknown" for other values. Never NULL. */
TL_API const char *tl_log_level_name(tl_log_level level);
/* Parse one of the names above (any case) into *level. Returns 0, or -1 with the reason in errbuf
 * (*level unchanged) for anything else, NULL included. */
TL_API int tl_log_parse_level(const char *s, tl_log_level *level, char *errbuf, size_t errlen);

/* At most lines_per_second lines per second from now on; 0 = no limit. */
TL_API void tl_log_set_rate(tl_log *log, unsigned lines_per_second);
/* Read the time from now_ms(arg) (milliseconds since the Unix epoch, UTC) instead of the system's
 * real-time clock; NULL restores it. The clock dates the lines and times the rate windows (a step
 * of the clock only starts a new window early). For tests, and for callers that cache the time.
 * Call before sharing the log. */
TL_API void tl_log_set_clock(tl_log *log, uint64_t (*now_ms)(void *arg), void *arg);

/* Format and write one line at level, if the level is enabled and the rate allows it. */
TL_API void tl_log_write(tl_log *log, tl_log_level level, const char *fmt, ...) TL_LOG_PRINTF(3, 4);
TL_API void tl_log_vwrite(tl_log *log, tl_log_level level, const char *fmt, va_list ap)
    TL_LOG_PRINTF(3, 0);

/* Not API: the first member of every tl_log, so that tl_log_enabled can be inline. */
struct tli_log_head {
    int level; /* read and written with atomic builtins only */
};

/* Would a line at this level be written (rate limit aside)? False for a NULL log. */
static inline bool tl_log_enabled(const tl_log *log, tl_log_level level)
{
    return log && (unsigned)level <= (unsigned)__atomic_load_n(
                                          &((const struct tli_log_head *)(const void *)log)->level,
                                          __ATOMIC_RELAXED);
}

/* tl_log_write that evaluates its arguments only when the level is enabled. */
#define TL_LOG(log, level, ...)                                                                  \
    do {                                                                                         \
        tl_log *tl_log_l_ = (log);                                                               \
        tl_log_level tl_log_v_ = (level);                                                        \
        if (tl_log_enabled(tl_log_l_, tl_log_v_))                                                \
            tl_log_write(tl_log_l_, tl_log_v_, __VA_ARGS__);                                     \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_LOG_H */
