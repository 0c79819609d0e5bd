/* ticket_keys.c - `tlsloop ticket-keys`: make, rotate and check a ticket key file (the text
 * format of tlsloop/tls_ctx.h; docs/session-store.md, "Key rotation"). Files are written
 * atomically: a new file (mode 600) beside the old one, fsync'd, renamed over it. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <tlsloop/tls_ctx.h>

#include "tools.h"

#define MAX_KEYS 64
#define DEFAULT_KEEP 2

void cmd_ticket_keys_usage(FILE *f)
{
    fprintf(f,
            "usage: tlsloop ticket-keys new FILE [--force]\n"
            "       tlsloop ticket-keys rotate FILE [--keep N]\n"
            "       tlsloop ticket-keys check FILE [--max-age TIME]\n\n"
            "The ticket key file that several tlsloop instances share (--ticket-key-file): the\n"
            "current key encrypts session tickets (and, with --session-store, the entries of\n"
            "the shared session cache); every key in the file decrypts.\n\n"
            "  new FILE      make a file with a current and a next key (mode 600); refuses to\n"
            "                replace an existing file unless --force\n"
            "  rotate FILE   the next key becomes current, a new next key is added, the old\n"
            "                current key stays as previous; only the newest N previous keys are\n"
            "                kept (--keep N, default %d: rotate at most every session lifetime / N)\n"
            "  check FILE    the format, the permissions (600, owned by you) and each key's age;\n"
            "                exit 1 when something is wrong, or when the current key is older than\n"
            "                --max-age (e.g. 12h; default: not checked)\n\n"
            "Every write goes to FILE.tmp first and is renamed over FILE: a server that rereads\n"
            "the file (on SIGHUP, or when it sees it change, within about a second) reads the\n"
            "old keys or the new ones, never half a file.\n\n"
            "Rotation across hosts: run rotate on one host, copy the file to every host (each\n"
            "copy atomically: to a temporary name, then mv). The key that becomes current was the\n"
            "next key of the copy before, so every host already decrypts with it before any host\n"
            "encrypts with it. Wait until every host has the new copy before the next rotation.\n",
            DEFAULT_KEEP);
}

/* The whole file into keys. 0, or -1 with the reason printed. */
static int load(const char *path, tl_ticket_key_entry *keys, size_t *n, struct stat *sb)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tlsloop ticket-keys: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char buf[MAX_KEYS * 512];
    ssize_t len = 0, k;
    while ((k = read(fd, buf + len, sizeof buf - (size_t)len)) > 0)
        len += k;
    int rc = -1;
    if (k < 0)
        fprintf(stderr, "tlsloop ticket-keys: %s: %s\n", path, strerror(errno));
    else if (fstat(fd, sb) != 0)
        fprintf(stderr, "tlsloop ticket-keys: %s: %s\n", path, strerror(errno));
    else if ((size_t)len == sizeof buf)
        fprintf(stderr, "tlsloop ticket-keys: %s: too large for a key file\n", path);
    else {
        char err[256];
        if (tl_ticket_keys_parse(buf, (size_t)len, keys, MAX_KEYS, n, err, sizeof err) != 0)
            fprintf(stderr, "tlsloop ticket-keys: %s: %s\n", path, err);
        else
            rc = 0;
    }
    OPENSSL_cleanse(buf, sizeof buf);
    close(fd);
    return rc;
}

/* Write keys to path atomically. 0, or -1 with the reason printed. */
static int save(const char *path, const tl_ticket_key_entry *keys, size_t n, bool exclusive)
{
    char text[MAX_KEYS * 200 + 256], tmp[4096];
    size_t len = tl_ticket_keys_format(keys, n, text, sizeof text);
    if (len == 0 || (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        fprintf(stderr, "tlsloop ticket-keys: %s: path too long\n", path);
        return -1;
    }
    unlink(tmp); /* a leftover of an interrupted run */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "tlsloop ticket-keys: %s: %s\n", tmp, strerror(errno));
        OPENSSL_cleanse(text, sizeof text);
        return -1;
    }
    size_t w = 0;
    while (w < len) {
        ssize_t k = write(fd, text + w, len - w);
        if (k <= 0)
            break;
        w += (size_t)k;
    }
    OPENSSL_cleanse(text, sizeof text);
    bool ok = w == len && fchmod(fd, 0600) == 0 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok && exclusive) {
        /* new without --force: link fails if the file is there */
        ok = link(tmp, path) == 0;
        int e = errno;
        unlink(tmp);
        if (!ok && e == EEXIST) {
            fprintf(stderr, "tlsloop ticket-keys: %s exists; rotate it (ticket-keys rotate), or "
                            "replace it with --force (tickets under its keys stop resuming)\n",
                    path);
            return -1;
        }
        errno = e;
    } else if (ok) {
        ok = rename(tmp, path) == 0;
    }
    if (!ok) {
        fprintf(stderr, "tlsloop ticket-keys: writing %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void print_age(FILE *f, int64_t created, int64_t now)
{
    if (created <= 0) {
        fprintf(f, "age unknown");
        return;
    }
    int64_t s = now - created;
    if (s < 0)
        fprintf(f, "made %lld s in the future", (long long)-s);
    else if (s < 3600)
        fprintf(f, "%lldm%02llds old", (long long)(s / 60), (long long)(s % 60));
    else
        fprintf(f, "%lldh%02lldm old", (long long)(s / 3600), (long long)(s / 60 % 60));
}

static void list(FILE *f, const tl_ticket_key_entry *keys, size_t n, int64_t now)
{
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "  %-8s name ", tl_ticket_key_role_name(keys[i].role));
        for (int b = 0; b < 4; b++)
            fprintf(f, "%02x", keys[i].key[b]);
        fprintf(f, "..., ");
        print_age(f, keys[i].created, now);
        fputc('\n', f);
    }
}

/* "30m", "12h", "2d", "90s" or bare seconds. -1 when it is none of those. */
static long long parse_age(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0)
        return -1;
    long long mul = !*end ? 1 : !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60
                  : !strcmp(end, "h") ? 3600 : !strcmp(end, "d") ? 86400 : -1;
    return mul < 0 ? -1 : v * mul;
}

static int cmd_new(const char *path, bool force)
{
    tl_ticket_key_entry k[2];
    int64_t now = (int64_t)time(NULL);
    if (tl_ticket_keys_make(&k[0], TL_TICKET_KEY_CURRENT, now) != 0 ||
        tl_ticket_keys_make(&k[1], TL_TICKET_KEY_NEXT, now) != 0) {
        fprintf(stderr, "tlsloop ticket-keys: no randomness\n");
        return EXIT_FAILURE_RUN;
    }
    int rc = save(path, k, 2, !force);
    if (rc == 0) {
        printf("%s: a current and a next key (mode 600)\n", path);
        list(stdout, k, 2, now);
    }
    OPENSSL_cleanse(k, sizeof k);
    return rc == 0 ? EXIT_OK : EXIT_FAILURE_RUN;
}

static int cmd_rotate(const char *path, unsigned keep)
{
    tl_ticket_key_entry k[MAX_KEYS];
    size_t n;
    struct stat sb;
    if (load(path, k, &n, &sb) != 0)
        return EXIT_FAILURE_RUN;
    int64_t now = (int64_t)time(NULL);
    size_t m = tl_ticket_keys_rotate(k, n, MAX_KEYS, keep, now);
    int rc = EXIT_FAILURE_RUN;
    if (m == 0)
        fprintf(stderr, "tlsloop ticket-keys: %s: cannot rotate (no randomness, or more than %d "
                        "keys: lower --keep)\n", path, MAX_KEYS);
    else if (save(path, k, m, false) == 0) {
        printf("%s: rotated\n", path);
        list(stdout, k, m, now);
        rc = EXIT_OK;
    }
    OPENSSL_cleanse(k, sizeof k);
    return rc;
}

static int cmd_check(const char *path, long long max_age)
{
    tl_ticket_key_entry k[MAX_KEYS];
    size_t n;
    struct stat sb;
    if (load(path, k, &n, &sb) != 0)
        return EXIT_FAILURE_RUN;
    int64_t now = (int64_t)time(NULL);
    int problems = 0;
    if (!S_ISREG(sb.st_mode)) {
        fprintf(stderr, "tlsloop ticket-keys: %s is not a regular file\n", path);
        problems++;
    }
    if (sb.st_mode & 077) {
        fprintf(stderr, "tlsloop ticket-keys: %s: mode %03o lets others read the keys (a server "
                        "refuses it): chmod 600 %s\n", path, (unsigned)(sb.st_mode & 0777), path);
        problems++;
    }
    if (sb.st_uid != geteuid()) {
        fprintf(stderr, "tlsloop ticket-keys: %s belongs to uid %u, not to you (uid %u): a "
                        "server running as you refuses it\n", path, (unsigned)sb.st_uid,
                (unsigned)geteuid());
        problems++;
    }
    bool has_next = false;
    int64_t current_made = 0;
    for (size_t i = 0; i < n; i++) {
        has_next |= k[i].role == TL_TICKET_KEY_NEXT;
        if (k[i].role == TL_TICKET_KEY_CURRENT)
            current_made = k[i].created;
    }
    printf("%s: %zu keys, %s format\n", path, n, current_made || has_next ? "text" : "binary");
    list(stdout, k, n, now);
    if (!has_next)
        printf("  no next key: the first rotation adds one and keeps the current key; the one "
               "after makes it current\n");
    if (max_age >= 0 && current_made > 0 && now - current_made > max_age) {
        fprintf(stderr, "tlsloop ticket-keys: %s: the current key is older than --max-age: "
                        "rotate it\n", path);
        problems++;
    }
    OPENSSL_cleanse(k, sizeof k);
    return problems ? EXIT_FAILURE_RUN : EXIT_OK;
}

int cmd_ticket_keys(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        cmd_ticket_keys_usage(stdout);
        return EXIT_OK;
    }
    if (argc < 3)
        return tool_usage_error("ticket-keys", "expected new|rotate|check FILE");
    const char *what = argv[1], *path = argv[2];
    bool force = false;
    long long keep = DEFAULT_KEEP, max_age = -1;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--force") && !strcmp(what, "new")) {
            force = true;
        } else if (!strcmp(argv[i], "--keep") && !strcmp(what, "rotate") && i + 1 < argc) {
            char *end;
            keep = strtoll(argv[++i], &end, 10);
            if (*end || keep < 0 || keep > MAX_KEYS - 2)
                return tool_usage_error("ticket-keys", "--keep %s: expected 0 to %d", argv[i],
                                        MAX_KEYS - 2);
        } else if (!strcmp(argv[i], "--max-age") && !strcmp(what, "check") && i + 1 < argc) {
            max_age = parse_age(argv[++i]);
            if (max_age < 0)
                return tool_usage_error("ticket-keys", "--max-age %s: expected a time such as "
                                        "12h or 30m", argv[i]);
        } else {
            return tool_usage_error("ticket-keys", "%s: not an option of '%s'", argv[i], what);
        }
    }
    if (!strcmp(what, "new"))
        return cmd_new(path, force);
    if (!strcmp(what, "rotate"))
        return cmd_rotate(path, (unsigned)keep);
    if (!strcmp(what, "check"))
        return cmd_check(path, max_age);
    return tool_usage_error("ticket-keys", "'%s': expected new, rotate or check", what);
}
