/* status.c - names of the library's statuses and error kinds. */
#include <tlsloop/status.h>

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
