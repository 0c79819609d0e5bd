/* http_chunked.c - reading (and checking) a chunked request body (tlsloop/http.h).
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk   = 1*("0") [ chunk-ext ] CRLF
 * A byte-at-a-time state machine: a body split anywhere reads the same. Line ends are CRLF or a
 * lone LF, as in the head; a bare CR is an error. Extensions and trailer fields are checked for
 * control characters and length, then skipped.
 */
#include <tlsloop/http.h>

#define LINE_MAX_BYTES 4096
#define SIZE_MAX_VALUE (1ull << 60)

enum {
    S_SIZE = 0,     /* hex digits of a chunk size (the first one not yet seen when line == 0) */
    S_EXT,          /* after the size: optional whitespace, ';' and an extension, to the line end */
    S_SIZE_LF,      /* CR seen after the size line */
    S_DATA,         /* chunk data, d->left bytes to go */
    S_DATA_END,     /* CRLF (or LF) after the data */
    S_DATA_LF,
    S_TRAILER,      /* start of a trailer line, or the final empty line */
    S_TRAILER_LINE, /* inside a trailer field */
    S_TRAILER_LF,
    S_END_LF,       /* CR of the final empty line seen */
};

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A byte allowed inside an extension or trailer line: tab, space, visible, obs-text. */
static bool line_byte(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

ssize_t tl_http_chunked_read(tl_http_chunked *d, const uint8_t *buf, size_t len)
{
    return tl_http_chunked_decode(d, buf, len, NULL, NULL);
}

ssize_t tl_http_chunked_decode(tl_http_chunked *d, const uint8_t *buf, size_t len,
                               void (*data)(void *arg, const uint8_t *p, size_t n), void *arg)
{
    size_t i = 0;
    while (i < len && !d->done) {
        uint8_t c = buf[i];
        switch (d->state) {
        case S_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                if (d->left >= SIZE_MAX_VALUE >> 4)
                    return TL_HTTP_ERROR;
                d->left = d->left * 16 + (uint64_t)v;
                d->line++;
                i++;
                break;
            }
            if (d->line == 0)
                return TL_HTTP_ERROR;   /* no digits */
            d->state = S_EXT;
            d->line = 0;   /* from here: bytes after the size; bit 31 set once ';' was seen */
            break;         /* the same byte again, in S_EXT */
        }
        case S_EXT:
            if (c == '\n' || c == '\r') {
                /* Whitespace after the size is allowed only before an extension (BWS ";"). */
                if (d->line && !(d->line & 0x80000000u))
                    return TL_HTTP_ERROR;
                d->state = c == '\r' ? S_SIZE_LF : S_DATA;
                i++;
                if (c == '\n')
                    goto size_line_done;
                break;
            }
            if (c == ';')
                d->line |= 0x80000000u;
            else if (!(d->line & 0x80000000u) ? (c != ' ' && c != '\t') : !line_byte(c))
                return TL_HTTP_ERROR;
            if ((++d->line & 0x7fffffffu) > LINE_MAX_BYTES)
                return TL_HTTP_ERROR;
            i++;
            break;
        case S_SIZE_LF:
            if (c != '\n')
                return TL_HTTP_ERROR;
            i++;
        size_line_done:
            d->line = 0;
            d->state = d->left ? S_DATA : S_TRAILER;
            break;
        case S_DATA: {
            size_t take = len - i < d->left ? len - i : (size_t)d->left;
            if (data && take)
                data(arg, buf + i, take);
            d->left -= take;
            d->total += take;
            i += take;
            if (d->left == 0)
                d->state = S_DATA_END;
            break;
        }
        case S_DATA_END:
            if (c == '\n') {
                d->state = S_SIZE;
            } else if (c == '\r') {
                d->state = S_DATA_LF;
            } else {
                return TL_HTTP_ERROR;
            }
            i++;
            break;
        case S_DATA_LF:
            if (c != '\n')
                return TL_HTTP_ERROR;
            d->state = S_SIZE;
            i++;
            break;
        case S_TRAILER:
            i++;
            if (c == '\n')
                d->done = true;
            else if (c == '\r')
                d->state = S_END_LF;
            else if (c == ' ' || c == '\t' || !line_byte(c))
                return TL_HTTP_ERROR;   /* folding, or a control character */
            else {
                d->state = S_TRAILER_LINE;
                d->line = 1;
            }
            break;
        case S_TRAILER_LINE:
            i++;
            if (c == '\n')
                d->state = S_TRAILER;
            else if (c == '\r')
                d->state = S_TRAILER_LF;
            else if (!line_byte(c) || ++d->line > LINE_MAX_BYTES)
                return TL_HTTP_ERROR;
            break;
        case S_TRAILER_LF:
            if (c != '\n')
                return TL_HTTP_ERROR;
            d->state = S_TRAILER;
            i++;
            break;
        case S_END_LF:
            if (c != '\n')
                return TL_HTTP_ERROR;
            d->done = true;
            i++;
            break;
        default:
            return TL_HTTP_ERROR;
        }
    }
    return (ssize_t)i;
}
