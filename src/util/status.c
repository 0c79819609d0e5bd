/* status.c - names of the library's statuses and error kinds, and tli_fmt, the bounded formatter
 * the library's messages are written with. */
#include <stdarg.h>
#include <stdio.h>

#include <tlsloop/status.h>

#include "util/tli.h"

void tli_fmt(char *buf, size_t len, const char *fmt, ...)
{
    if (len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0)
        buf[0] = '\0';
}

const char *tl_status_name(tl_status s)
{
    switch (s) {
    case TL_OK: return "ok";
    case TL_WANT_INPUT: return "want-input";
    case TL_WANT_OUTPUT: return "want-output";
    case TL_NEED_TASK: return "need-task";
    case TL_CLOSED: return "closed";
    case TL_TRUNCATED: return "truncated";
    case TL_ERROR: return "error";
    }
    return "unknown-status";
}

const char *tl_error_kind_name(tl_error_kind k)
{
    switch (k) {
    case TL_ERR_NONE: return "none";
    case TL_ERR_USAGE: return "usage";
    case TL_ERR_RESOURCE: return "resource";
    case TL_ERR_IO: return "io";
    case TL_ERR_PROTOCOL: return "protocol";
    case TL_ERR_ALERT: return "alert";
    case TL_ERR_VERIFY: return "verify";
    case TL_ERR_CONFIG: return "config";
    }
    return "unknown-error-kind";
}
