/*
 * tlsloop/http.h - HTTP/1.1 requests: a strict parser, the checks that keep a request from being
 * read two ways (smuggling), a chunked-body reader, target decoding, and the small field grammars
 * a static file server needs (dates, ranges, entity tags, token lists, media types).
 *
 * Everything here is pure: no I/O, no allocation, no global state; every function is safe from
 * any thread. It is the layer under tlsloop/httpd.h, and usable alone (a proxy, a test client).
 *
 * Parsing follows picohttpparser's contract. tl_http_parse_request looks at the bytes received so
 * far and answers
 *   > 0                 a complete request head of that many bytes; the request's fields point
 *                       into buf (valid as long as buf is); the body, if any, follows,
 *   TL_HTTP_INCOMPLETE  a valid beginning: call again with more bytes (tl_http_incomplete_status
 *                       says which error a head that never ends deserves),
 *   TL_HTTP_ERROR       malformed: answer req->error_status (400, 431 or 505) and close.
 * It is strict where leniency lets two parsers disagree (RFC 9112): one space between the parts
 * of the request line; "HTTP/1.x" only (1.2-1.9 count as 1.1, other versions are 505); no
 * whitespace between a field name and its colon; field names are tokens; no obsolete line
 * folding; no NUL, no control characters in values (tab aside), no bare CR anywhere. Every line
 * ends with CRLF: a lone LF is refused (400, "lone LF") unless the caller passes TL_HTTP_LONE_LF,
 * since a front end that keeps the LF inside a value would read "X: a\nContent-Length: 5" as one
 * field and tlsloop as two. Empty lines (CRLF) before the request line are skipped.
 *
 * A server reading a head as it arrives runs tl_http_scan_head on each read: it remembers where
 * it stopped, so a head that dribbles in costs linear time, and it refuses a head as soon as the
 * bytes seen cannot begin a valid one (a bad method or target byte, a bad version, a bad field
 * name byte, folding, a bare CR, a lone LF) instead of waiting for the empty line. Once it says
 * the head ended, tl_http_parse_request(_ex) gives the fields.
 *
 * Responses (tl_http_parse_response, for clients) stay lenient about line ends: a lone LF ends a
 * line there, as in most clients; a client is not a front end others rely on.
 *
 * tl_http_check_request then applies the framing rules: Content-Length must be one plain number
 * (repeated, negative, signed, listed or with junk: 400); Transfer-Encoding with Content-Length
 * is 400; a Transfer-Encoding must end in chunked (else 400) and be chunked alone (other codings:
 * 501), and is refused in HTTP/1.0; HTTP/1.1 needs exactly one valid Host field; Expect is
 * 100-continue or 417. It also says whether the connection persists: HTTP/1.1 unless
 * "Connection: close", HTTP/1.0 only with "Connection: keep-alive".
 */
#ifndef TLSLOOP_HTTP_H
#define TLSLOOP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <tlsloop/api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_HTTP_INCOMPLETE (-2)
#define TL_HTTP_ERROR (-1)

typedef struct tl_http_header {
    const char *name;         /* a token, as sent (compare without case) */
    size_t name_len;
    const char *value;        /* without leading and trailing spaces and tabs */
    size_t value_len;
} tl_http_header;

typedef struct tl_http_request {
    const char *method;       /* a token, case-sensitive ("GET") */
    size_t method_len;
    const char *target;       /* the request-target as sent: "/a%20b?q", "http://h/x", "*" */
    size_t target_len;
    int minor_version;        /* 0 or 1 */
    tl_http_header *headers;  /* in: the caller's array */
    size_t max_headers;       /* in: its size (more fields than this: 431) */
    size_t num_headers;       /* out: fields found */
    int error_status;         /* out, on TL_HTTP_ERROR: 400, 431 or 505 */
    const char *error;        /* out, on TL_HTTP_ERROR: why, in a few words (static text) */
} tl_http_request;

/* Parse a request head from buf (see above). req->headers and req->max_headers are inputs. */
TL_API int tl_http_parse_request(const char *buf, size_t len, tl_http_request *req);

/* Flags for the _ex functions and tl_http_chunked_init; bits not named here must be 0. */
#define TL_HTTP_LONE_LF 0x1u   /* a lone LF ends a line too (lenient; not for a server behind
                                  another proxy: the two may then disagree where a field ends) */
/* tl_http_parse_request with flags (0: the same as tl_http_parse_request). */
TL_API int tl_http_parse_request_ex(const char *buf, size_t len, tl_http_request *req,
                                    unsigned flags);

/* The incremental check of a request head (see above). Zero it and set flags to start; call it
 * with the bytes received so far (the same bytes again, and more) each time more arrive. Returns
 * the head's length once its empty line arrived and every byte of it was valid, TL_HTTP_INCOMPLETE
 * while the bytes are a valid beginning, or TL_HTTP_ERROR with error_status (400 or 505) and
 * error set: the same answer tl_http_parse_request_ex gives for these bytes, except that it does
 * not count fields (431 is the parser's). */
typedef struct tl_http_scan {
    unsigned flags;           /* in: TL_HTTP_LONE_LF or 0 */
    int error_status;         /* out, on TL_HTTP_ERROR */
    const char *error;        /* out, on TL_HTTP_ERROR: why (static text) */
    size_t at;                /* private: bytes checked so far */
    unsigned state, aux;      /* private */
} tl_http_scan;
TL_API int tl_http_scan_head(tl_http_scan *s, const char *buf, size_t len);

/* The status for a head that is still TL_HTTP_INCOMPLETE when its buffer is full: 414 while the
 * request line itself has not ended, else 431. */
TL_API int tl_http_incomplete_status(const char *buf, size_t len);

/* Whether a parse of the bytes seen so far is worth it: an empty line has arrived (CRLF CRLF,
 * or LF LF and LF CRLF, which the parser then refuses with a lone LF unless TL_HTTP_LONE_LF).
 * Scans only buf[from - 3 .. len), so a head that arrives a byte at a time costs linear time, not
 * quadratic, when this gates tl_http_parse_request. It does not refuse anything early: a server
 * uses tl_http_scan_head instead. */
TL_API bool tl_http_head_ended(const char *buf, size_t len, size_t from);

/* The framing and connection facts of a parsed request. */
typedef struct tl_http_message {
    int64_t content_length;   /* -1: no Content-Length */
    bool chunked;             /* Transfer-Encoding: chunked */
    bool keep_alive;          /* the connection persists after this exchange */
    bool expect_continue;     /* Expect: 100-continue */
    const char *host;         /* the Host field (NULL when there is none) */
    size_t host_len;
    int error_status;         /* tl_http_check_request's answer when it is not 0 */
    const char *error;        /* why (static text) */
} tl_http_message;

/* Apply the framing rules above. Returns 0, or the status to answer with (400, 417 or 501; the
 * connection must close then, its framing is unknown); out is filled either way. */
TL_API int tl_http_check_request(const tl_http_request *req, tl_http_message *out);

/* ---- responses (for clients) ------------------------------------------------------------ */

typedef struct tl_http_response {
    int minor_version;        /* 0 or 1 */
    int status;               /* 100-999 */
    const char *reason;       /* the reason phrase, may be empty */
    size_t reason_len;
    tl_http_header *headers;  /* in: the caller's array */
    size_t max_headers;       /* in: its size */
    size_t num_headers;       /* out */
    const char *error;        /* out, on TL_HTTP_ERROR: why */
} tl_http_response;

/* Parse a response head ("HTTP/1.1 200 OK" and its fields) with the request parser's contract
 * and strictness, except that a lone LF ends a line (see above). */
TL_API int tl_http_parse_response(const char *buf, size_t len, tl_http_response *resp);

/* The framing of a response's body (RFC 9112 6.3): none for HEAD requests, 1xx, 204 and 304;
 * chunked; a Content-Length; or until the connection closes (then keep_alive is false). Returns 0,
 * or -1 when the framing is ambiguous or malformed (CL with TE, repeated or bad CL, a transfer
 * coding other than chunked): the response cannot be read safely. out->error says why. */
typedef struct tl_http_body {
    bool none;                /* no body at all */
    bool chunked;
    bool until_close;         /* delimited by the end of the connection */
    int64_t content_length;   /* -1 unless given */
    bool keep_alive;          /* the connection may carry another request */
    const char *error;
} tl_http_body;
TL_API int tl_http_response_body(const tl_http_response *resp, bool head_request,
                                 tl_http_body *out);

/* The first field of this name (case-insensitive), or NULL; _in searches any array. */
TL_API const tl_http_header *tl_http_find_header(const tl_http_request *req, const char *name);
TL_API const tl_http_header *tl_http_find_in(const tl_http_header *h, size_t n, const char *name);

/* Does the comma-separated list (a Connection value, say) hold this token (case-insensitive)? */
TL_API bool tl_http_list_has(const char *list, size_t len, const char *token);

/* ---- chunked request bodies ------------------------------------------------------------- */

/* A reader of a chunked body that checks its framing and counts its data (it does not keep the
 * data: a static server reads and discards bodies). Zero it (strict: CRLF line ends) or call
 * tl_http_chunked_init to start. Checked per RFC 9112 7.1: the size is hex digits; extensions are
 * *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ), so "2;" with no name, an
 * unclosed quote or a byte outside the grammar is an error, and the size line with its extensions
 * is at most 1 KiB; trailer fields are header fields (token ":" OWS value, no folding, no control
 * characters), the trailer section at most 16 KiB; every line ends with CRLF. */
typedef struct tl_http_chunked {
    uint64_t total;           /* data bytes so far */
    uint64_t left;            /* of the current chunk */
    unsigned state;           /* private (the flags of tl_http_chunked_init live here too) */
    unsigned line;            /* private: bytes of the size line, or of the trailer section */
    bool done;                /* the body ended (last chunk and trailer read) */
} tl_http_chunked;

/* Start (or restart) d; flags: TL_HTTP_LONE_LF lets a lone LF end its lines, or 0. */
TL_API void tl_http_chunked_init(tl_http_chunked *d, unsigned flags);
/* Consume up to len bytes of the body. Returns the bytes consumed: all of them while the body
 * goes on; fewer when it ended inside (d->done; the rest is the next request). TL_HTTP_ERROR on a
 * malformed chunk (a bad size, a size over 2^60, a bad extension, a chunk not followed by CRLF, a
 * lone LF, a size line over 1 KiB, a bad trailer field, trailers over 16 KiB). */
TL_API ssize_t tl_http_chunked_read(tl_http_chunked *d, const uint8_t *buf, size_t len);
/* The same, and each piece of the body's data is passed to data(arg, piece, n) as it is found
 * (pieces point into buf). */
TL_API ssize_t tl_http_chunked_decode(tl_http_chunked *d, const uint8_t *buf, size_t len,
                                      void (*data)(void *arg, const uint8_t *p, size_t n),
                                      void *arg);

/* ---- the request target ----------------------------------------------------------------- */

/* Turn a request-target into a clean absolute path: the query dropped, percent escapes decoded,
 * empty and "." segments removed, ".." segments applied, in that order (so "%2e%2e" is "..").
 * The path starts with '/'; it ends with '/' when the target's path did (or named a directory
 * with "." or ".."). Writes at most outlen bytes with a NUL. Returns the path's length, or -1:
 * not an absolute path (nor an http(s):// URL holding one), an escape that is not %XX with hex
 * digits, an encoded NUL or control character, a ".." above the root, or no room. */
TL_API ssize_t tl_http_normalize_path(const char *target, size_t len, char *out, size_t outlen);

/* ---- field grammars --------------------------------------------------------------------- */

/* Length of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), without the NUL. */
#define TL_HTTP_DATE_LEN 29
/* Format t as an IMF-fixdate into out (TL_HTTP_DATE_LEN + 1 bytes). */
TL_API void tl_http_format_date(time_t t, char *out);
/* Parse an HTTP-date in any of its three forms (IMF-fixdate, RFC 850, asctime). 0 or -1. */
TL_API int tl_http_parse_date(const char *s, size_t len, time_t *out);

/* A Range field against a representation of `size` bytes. Returns 1 with the bytes [*first,
 * *last] to send; 0 when the field must be ignored (not "bytes=", malformed, several ranges: the
 * whole representation is sent); -1 when no byte of it can be sent (answer 416). */
TL_API int tl_http_parse_range(const char *v, size_t len, uint64_t size, uint64_t *first,
                               uint64_t *last);

/* Does an If-None-Match value ("*", or a list of entity tags) match etag ("\"...\"", or weak
 * W/"...")? The weak comparison RFC 9110 prescribes for it. */
TL_API bool tl_http_etag_match(const char *list, size_t len, const char *etag, size_t etag_len);

/* The media type for a file name's extension ("text/html; charset=utf-8", "image/png"),
 * "application/octet-stream" when unknown. Never NULL. */
TL_API const char *tl_http_mime_type(const char *name, size_t len);

/* "Not Found" for 404 and the like; "Unknown" for codes this library never sends. */
TL_API const char *tl_http_reason(int status);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_HTTP_H */
