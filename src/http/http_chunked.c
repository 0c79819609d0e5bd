/* http_chunked.c - reading (and checking) a chunked body (tlsloop/http.h; docs/http.md, "Chunked
 * bodies"): a byte-at-a-time state machine, so a body split anywhere reads the same. */
#include <string.h>

#include <tlsloop/http.h>

#define SIZE_LINE_MAX 1024      /* a chunk-size line, extensions and CRLF included */
#define TRAILERS_MAX 16384      /* the whole trailer section */
#define SIZE_MAX_VALUE (1ull << 60)
/* d->state: the machine's state in its low byte, the flags above it, so a zeroed reader is a
 * strict one and the public struct keeps its size. */
#define FLAG_SHIFT 8

/* RFC 9112 7.1:
 *   chunked-body   = *chunk last-chunk trailer-section CRLF
 *   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk     = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-val  = token / quoted-string
 *   trailer-section = *( field-line CRLF )
 * Lines end with CRLF (a lone LF only with TL_HTTP_LONE_LF; a bare CR is an error). Extensions are
 * checked against the grammar and skipped; trailer fields are checked as header fields and
 * skipped. */
enum {
    S_SIZE = 0,     /* hex digits of a chunk size (the first one not yet seen when line == 0) */
    S_SIZE_WS,      /* BWS after the size: only ';' may follow */
    S_EXT_NAME0,    /* after ';' and BWS: the name's first byte */
    S_EXT_NAME,
    S_EXT_NAME_WS,  /* BWS after a name: '=' or ';' */
    S_EXT_VAL0,     /* after '=' and BWS: a token or a quoted string */
    S_EXT_TOKEN,
    S_EXT_QUOTED,
    S_EXT_QPAIR,    /* after a backslash inside quotes */
    S_EXT_VAL_WS,   /* BWS after a value: only ';' may follow */
    S_EXT_QEND,     /* after a closing quote: BWS, ';' or the line end */
    S_SIZE_LF,      /* CR seen after the size line */
    S_DATA,         /* chunk data, d->left bytes to go */
    S_DATA_END,     /* CRLF after the data */
    S_DATA_LF,
    S_TRAILER,      /* start of a trailer field, or the final empty line */
    S_TRAILER_NAME,
    S_TRAILER_VALUE,
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

static bool token_byte(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A byte of a field value: tab, space, visible, obs-text. */
static bool value_byte(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* qdtext: a value byte other than '"' and '\' (RFC 9110 5.6.4). */
static bool qdtext(uint8_t c)
{
    return value_byte(c) && c != '"' && c != '\\';
}

void tl_http_chunked_init(tl_http_chunked *d, unsigned flags)
{
    *d = (tl_http_chunked){.state = flags << FLAG_SHIFT};
}

ssize_t tl_http_chunked_read(tl_http_chunked *d, const uint8_t *buf, size_t len)
{
    return tl_http_chunked_decode(d, buf, len, NULL, NULL);
}

ssize_t tl_http_chunked_decode(tl_http_chunked *d, const uint8_t *buf, size_t len,
                               void (*data)(void *arg, const uint8_t *p, size_t n), void *arg)
{
    const unsigned flags = d->state >> FLAG_SHIFT;
    const bool lone_lf = flags & TL_HTTP_LONE_LF;
    unsigned st = d->state & 0xffu;
    size_t i = 0;
#define GO(s) (st = (s))
#define BAD() goto bad
    while (i < len && !d->done) {
        uint8_t c = buf[i];
        bool ws = c == ' ' || c == '\t';
        /* Every state of the size line counts its bytes against the bound. */
        if (st <= S_SIZE_LF && ++d->line > SIZE_LINE_MAX)
            BAD();
        switch (st) {
        case S_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                if (d->left >= SIZE_MAX_VALUE >> 4)
                    BAD();
                d->left = d->left * 16 + (uint64_t)v;
                i++;
                break;
            }
            if (d->line == 1)
                BAD();   /* no digits */
            if (c == ';')
                GO(S_EXT_NAME0);
            else if (ws)
                GO(S_SIZE_WS);
            else if (c == '\r')
                GO(S_SIZE_LF);
            else if (c == '\n' && lone_lf) {
                i++;
                goto size_line_done;
            } else
                BAD();
            i++;
            break;
        }
        case S_SIZE_WS:       /* BWS is allowed only before a ';' ("5 \r\n" is refused) */
        case S_EXT_NAME_WS:
        case S_EXT_VAL_WS:
            if (c == ';')
                GO(S_EXT_NAME0);
            else if (c == '=' && st == S_EXT_NAME_WS)
                GO(S_EXT_VAL0);
            else if (!ws)
                BAD();
            i++;
            break;
        case S_EXT_NAME0:
        case S_EXT_VAL0:
            if (ws) {
                i++;
                break;
            }
            if (c == '"' && st == S_EXT_VAL0)
                GO(S_EXT_QUOTED);
            else if (token_byte(c))
                GO(st == S_EXT_VAL0 ? S_EXT_TOKEN : S_EXT_NAME);
            else
                BAD();   /* "2;" with no name, "2;=x", "2;a=" with no value */
            i++;
            break;
        case S_EXT_NAME:
        case S_EXT_TOKEN:
        case S_EXT_QEND:
            i++;
            if (token_byte(c) && st != S_EXT_QEND)
                break;
            if (c == ';')
                GO(S_EXT_NAME0);
            else if (c == '=' && st == S_EXT_NAME)
                GO(S_EXT_VAL0);
            else if (ws)
                GO(st == S_EXT_NAME ? S_EXT_NAME_WS : S_EXT_VAL_WS);
            else if (c == '\r')
                GO(S_SIZE_LF);
            else if (c == '\n' && lone_lf)
                goto size_line_done;
            else
                BAD();
            break;
        case S_EXT_QUOTED:
            if (c == '"')
                GO(S_EXT_QEND);
            else if (c == '\\')
                GO(S_EXT_QPAIR);
            else if (!qdtext(c))
                BAD();   /* a CR, LF or control byte inside quotes: an unclosed quote */
            i++;
            break;
        case S_EXT_QPAIR:
            if (!value_byte(c))
                BAD();
            GO(S_EXT_QUOTED);
            i++;
            break;
        case S_SIZE_LF:
            if (c != '\n')
                BAD();
            i++;
        size_line_done:   /* the line's last byte consumed */
            d->line = 0;
            GO(d->left ? S_DATA : S_TRAILER);
            break;
        case S_DATA: {
            size_t take = len - i < d->left ? len - i : (size_t)d->left;
            if (data && take)
                data(arg, buf + i, take);
            d->left -= take;
            d->total += take;
            i += take;
            if (d->left == 0)
                GO(S_DATA_END);
            break;
        }
        case S_DATA_END:
            if (c == '\r')
                GO(S_DATA_LF);
            else if (c == '\n' && lone_lf)
                GO(S_SIZE);
            else
                BAD();
            i++;
            break;
        case S_DATA_LF:
            if (c != '\n')
                BAD();
            GO(S_SIZE);
            i++;
            break;
        case S_TRAILER:
        case S_TRAILER_NAME:
        case S_TRAILER_VALUE:
        case S_TRAILER_LF:
        case S_END_LF:
            if (++d->line > TRAILERS_MAX)
                BAD();
            i++;
            if (st == S_TRAILER) {
                if (c == '\r')
                    GO(S_END_LF);
                else if (c == '\n' && lone_lf)
                    d->done = true;
                else if (token_byte(c))
                    GO(S_TRAILER_NAME);
                else
                    BAD();   /* folding, an empty name, a control byte, a lone LF */
            } else if (st == S_TRAILER_NAME) {
                if (c == ':')
                    GO(S_TRAILER_VALUE);
                else if (!token_byte(c))
                    BAD();   /* whitespace before the colon, a bad name byte */
            } else if (st == S_TRAILER_VALUE) {
                if (c == '\r')
                    GO(S_TRAILER_LF);
                else if (c == '\n' && lone_lf)
                    GO(S_TRAILER);
                else if (!value_byte(c))
                    BAD();
            } else if (c != '\n') {
                BAD();       /* a bare CR */
            } else if (st == S_TRAILER_LF) {
                GO(S_TRAILER);
            } else {
                d->done = true;
            }
            break;
        default:
            BAD();
        }
    }
    d->state = (flags << FLAG_SHIFT) | st;
    return (ssize_t)i;
bad:
    d->state = (flags << FLAG_SHIFT) | st;
    return TL_HTTP_ERROR;
#undef GO
#undef BAD
}
