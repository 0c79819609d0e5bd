/* http_fields.c - the small grammars of HTTP fields: dates, byte ranges, entity tags, media types
 * and reason phrases (tlsloop/http.h). Dates are formatted and parsed by hand: strftime and
 * strptime follow the locale, HTTP does not. */
#include <string.h>
#include <strings.h>

#include <tlsloop/http.h>

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

void tl_http_format_date(time_t t, char *out)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    memcpy(out, days[tm.tm_wday], 3);
    out[3] = ',';
    out[4] = ' ';
    put2(out + 5, tm.tm_mday);
    out[7] = ' ';
    memcpy(out + 8, months[tm.tm_mon], 3);
    out[11] = ' ';
    int y = tm.tm_year + 1900;
    put2(out + 12, y / 100);
    put2(out + 14, y % 100);
    out[16] = ' ';
    put2(out + 17, tm.tm_hour);
    out[19] = ':';
    put2(out + 20, tm.tm_min);
    out[22] = ':';
    put2(out + 23, tm.tm_sec);
    memcpy(out + 25, " GMT", 5);   /* with the NUL */
}

/* ---- parsing dates ---------------------------------------------------------------------- */

typedef struct cursor {
    const char *p, *end;
} cursor;

static bool lit(cursor *c, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return false;
    c->p += n;
    return true;
}

/* Exactly `digits` digits (a leading space stands for a zero when space_pad, as asctime pads the
 * day). */
static bool num(cursor *c, int digits, bool space_pad, int *out)
{
    if (c->end - c->p < digits)
        return false;
    int v = 0;
    for (int i = 0; i < digits; i++) {
        char ch = c->p[i];
        if (ch == ' ' && space_pad && i == 0)
            continue;
        if (ch < '0' || ch > '9')
            return false;
        v = v * 10 + (ch - '0');
    }
    c->p += digits;
    *out = v;
    return true;
}

static bool month(cursor *c, int *out)
{
    if (c->end - c->p < 3)
        return false;
    for (int i = 0; i < 12; i++)
        if (memcmp(c->p, months[i], 3) == 0) {
            c->p += 3;
            *out = i;
            return true;
        }
    return false;
}

static bool clock_time(cursor *c, struct tm *tm)
{
    return num(c, 2, false, &tm->tm_hour) && lit(c, ":") && num(c, 2, false, &tm->tm_min) &&
           lit(c, ":") && num(c, 2, false, &tm->tm_sec);
}

/* A day name: the three-letter one, or (RFC 850) the full one, then `after`. */
static bool day_name(cursor *c, bool full, const char *after)
{
    static const char *const long_days[7] = {"Sunday", "Monday", "Tuesday", "Wednesday",
                                             "Thursday", "Friday", "Saturday"};
    for (int i = 0; i < 7; i++) {
        cursor save = *c;
        if (lit(c, full ? long_days[i] : days[i]) && lit(c, after))
            return true;
        *c = save;
    }
    return false;
}

int tl_http_parse_date(const char *s, size_t len, time_t *out)
{
    struct tm tm = {0};
    cursor c = {s, s + len};
    int year;
    cursor start = c;
    if (day_name(&c, false, ", ")) {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        if (!(num(&c, 2, false, &tm.tm_mday) && lit(&c, " ") && month(&c, &tm.tm_mon) &&
              lit(&c, " ") && num(&c, 4, false, &year) && lit(&c, " ") && clock_time(&c, &tm) &&
              lit(&c, " GMT")))
            return -1;
    } else if ((c = start, day_name(&c, true, ", "))) {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"; a two-digit year is 19xx or 20xx, whichever
         * is nearer now's century window (below 70: 20xx). */
        if (!(num(&c, 2, false, &tm.tm_mday) && lit(&c, "-") && month(&c, &tm.tm_mon) &&
              lit(&c, "-") && num(&c, 2, false, &year) && lit(&c, " ") && clock_time(&c, &tm) &&
              lit(&c, " GMT")))
            return -1;
        year += year < 70 ? 2000 : 1900;
    } else if ((c = start, day_name(&c, false, " "))) {
        /* asctime: "Sun Nov  6 08:49:37 1994" */
        if (!(month(&c, &tm.tm_mon) && lit(&c, " ") && num(&c, 2, true, &tm.tm_mday) &&
              lit(&c, " ") && clock_time(&c, &tm) && lit(&c, " ") && num(&c, 4, false, &year)))
            return -1;
    } else {
        return -1;
    }
    if (c.p != c.end || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60 || year < 1900)
        return -1;
    tm.tm_year = year - 1900;
    *out = timegm(&tm);
    return 0;
}

/* ---- ranges and entity tags ------------------------------------------------------------- */

/* Digits into *v, saturating at UINT64_MAX (a position past any file). False without digits. */
static bool digits(const char **pp, const char *end, uint64_t *v)
{
    const char *p = *pp;
    uint64_t n = 0;
    if (p == end || *p < '0' || *p > '9')
        return false;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        n = n > (UINT64_MAX - 9) / 10 ? UINT64_MAX : n * 10 + (uint64_t)(*p - '0');
    *pp = p;
    *v = n;
    return true;
}

int tl_http_parse_range(const char *v, size_t len, uint64_t size, uint64_t *first, uint64_t *last)
{
    const char *p = v, *end = v + len;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end - p < 6 || strncasecmp(p, "bytes=", 6) != 0)
        return 0;
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p < end && memchr(p, ',', (size_t)(end - p)))
        return 0;   /* several ranges: the whole representation instead (RFC 9110 14.2 allows) */
    uint64_t a, b;
    if (p < end && *p == '-') {
        p++;
        if (!digits(&p, end, &b) || p != end)
            return 0;
        if (b == 0 || size == 0)
            return -1;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 1;
    }
    if (!digits(&p, end, &a) || p == end || *p++ != '-')
        return 0;
    if (p == end) {
        b = UINT64_MAX;
    } else if (!digits(&p, end, &b) || p != end || b < a) {
        return 0;
    }
    if (a >= size)
        return -1;
    *first = a;
    *last = b >= size ? size - 1 : b;
    return 1;
}

/* An entity tag's opaque part, without W/: the quoted string. */
static void strip_weak(const char **p, size_t *len)
{
    if (*len >= 2 && (*p)[0] == 'W' && (*p)[1] == '/') {
        *p += 2;
        *len -= 2;
    }
}

bool tl_http_etag_match(const char *list, size_t len, const char *etag, size_t etag_len)
{
    strip_weak(&etag, &etag_len);
    const char *p = list, *end = list + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p == end)
            break;
        if (*p == '*')
            return true;
        /* One entity tag: [W/] DQUOTE *etagc DQUOTE (a comma may sit inside the quotes). */
        const char *s = p;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        if (p == end || *p != '"')
            return false;   /* malformed: nothing matches */
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (!q)
            return false;
        p = q + 1;
        const char *tag = s;
        size_t tlen = (size_t)(p - s);
        strip_weak(&tag, &tlen);
        if (tlen == etag_len && memcmp(tag, etag, tlen) == 0)
            return true;
    }
    return false;
}

/* ---- media types and reasons ------------------------------------------------------------ */

static const struct {
    const char *ext, *type;
} mime_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"bmp", "image/bmp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"xz", "application/x-xz"},
    {"zst", "application/zstd"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"pem", "application/x-pem-file"},
    {"webmanifest", "application/manifest+json"},
};

const char *tl_http_mime_type(const char *name, size_t len)
{
    size_t i = len;
    while (i > 0 && name[i - 1] != '.' && name[i - 1] != '/')
        i--;
    if (i == 0 || name[i - 1] != '.')
        return "application/octet-stream";
    const char *ext = name + i;
    size_t elen = len - i;
    for (size_t k = 0; k < sizeof mime_types / sizeof mime_types[0]; k++)
        if (strlen(mime_types[k].ext) == elen && strncasecmp(ext, mime_types[k].ext, elen) == 0)
            return mime_types[k].type;
    return "application/octet-stream";
}

const char *tl_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
