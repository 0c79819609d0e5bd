/* httpd_files.c - files below the root (openat2 RESOLVE_BENEATH), and the per-worker cache of
 * small ones (tlsloop/httpd.h; docs/http.md, "Files"). */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "httpd/httpd_int.h"

struct hentry {
    hentry *next;                  /* in its bucket */
    hentry *lru_prev, *lru_next;
    uint64_t hash;
    time_t checked;                /* when it was last compared with the file */
    dev_t dev;
    ino_t ino;
    hfile f;                       /* fd -1, data below */
    size_t path_len;
    char *path;
    uint8_t *data;
    unsigned refs;                 /* answers being sent from data (HTTP/2 streams) */
    bool gone;                     /* dropped from the cache while held: freed when released */
};

/* ---- opening below the root ------------------------------------------------------------- */

static int open_fallback(tl_httpd *h, const char *rel, int flags)
{
    int fd = openat(h->root_fd, rel, flags);
    if (fd < 0)
        return -1;
    char link[64], real[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof real - 1);
    size_t rl = strlen(h->root_real);
    /* Inside: the root itself, or below it ("/srv/www" must not admit "/srv/www2"). */
    bool inside = n >= 0 && (size_t)n >= rl && memcmp(real, h->root_real, rl) == 0 &&
                  ((size_t)n == rl || real[rl] == '/' || (rl == 1 && real[0] == '/'));
    if (!inside) {
        close(fd);
        errno = EXDEV;
        return -1;
    }
    return fd;
}

static int open_beneath(tl_httpd *h, const char *rel)
{
    static _Atomic int no_openat2;
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    if (!atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
        struct open_how how = {.flags = (uint64_t)flags,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
        long fd = syscall(SYS_openat2, h->root_fd, rel, &how, sizeof how);
        if (fd >= 0 || errno != ENOSYS)
            return (int)fd;
        atomic_store_explicit(&no_openat2, 1, memory_order_relaxed);
    }
    return open_fallback(h, rel, flags);
}

static int status_of_errno(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return 404;
    case EXDEV:     /* would leave the root */
    case ELOOP:
    case EACCES:
    case EPERM:
        return 403;
    case ENAMETOOLONG:
        return 414;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EAGAIN:
        return 503;
    default:
        return 500;
    }
}

/* Resolve a normalised path ("/a/b", "/dir/") to an open regular file and its status. */
static int resolve(hworker *w, const char *path, size_t len, int *fdp, struct stat *st)
{
    tl_httpd *h = w->h;
    char rel[4096];
    /* "/a/b" is "a/b" below the root; "/" is the root itself. */
    int n = snprintf(rel, sizeof rel, "%.*s", (int)(len - 1), path + 1);
    if (n < 0 || (size_t)n >= sizeof rel - strlen(h->index) - 1)
        return 414;
    if (n == 0)
        strcpy(rel, ".");
    int fd = open_beneath(h, rel);
    if (fd < 0)
        return status_of_errno(errno);
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return status_of_errno(e);
    }
    if (S_ISDIR(st->st_mode)) {
        close(fd);
        if (path[len - 1] != '/')
            return 301;
        /* rel ends with '/' (or is "." for the root, which the index name replaces). */
        snprintf(rel + n, sizeof rel - (size_t)n, "%s", h->index);
        if ((fd = open_beneath(h, rel)) < 0)
            return errno == ENOENT ? 403 : status_of_errno(errno);   /* no index: not listed */
        if (fstat(fd, st) != 0) {
            int e = errno;
            close(fd);
            return status_of_errno(e);
        }
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return 403;
    }
    *fdp = fd;
    return 0;
}

static void describe(hfile *f, const struct stat *st, const char *name, size_t len)
{
    f->size = (uint64_t)st->st_size;
    f->mtime = st->st_mtim;
    uint64_t ns = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
    snprintf(f->etag, sizeof f->etag, "\"%llx-%llx\"", (unsigned long long)f->size,
             (unsigned long long)ns);
    tl_http_format_date(st->st_mtim.tv_sec, f->last_modified);
    f->type = tl_http_mime_type(name, len);
}

/* The file name whose extension decides the type: the index for a directory path. */
static void type_name(hworker *w, const char *path, size_t len, const char **name, size_t *nlen)
{
    if (path[len - 1] == '/') {
        *name = w->h->index;
        *nlen = strlen(w->h->index);
    } else {
        *name = path;
        *nlen = len;
    }
}

/* ---- the cache -------------------------------------------------------------------------- */

static void lru_unlink(hcache *c, hentry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_front(hcache *c, hentry *e)
{
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

static void entry_free(hentry *e)
{
    free(e->data);
    free(e->path);
    free(e);
}

static void drop(hcache *c, hentry *e)
{
    hentry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    lru_unlink(c, e);
    c->bytes -= e->f.size;
    c->count--;
    if (e->refs)
        e->gone = true;   /* an answer still sends from it: the last release frees it */
    else
        entry_free(e);
}

void tli_httpd_entry_release(hentry *e)
{
    if (--e->refs == 0 && e->gone)
        entry_free(e);
}

static hentry *lookup(hcache *c, const char *path, size_t len, uint64_t hash)
{
    if (!c->nbuckets)
        return NULL;
    for (hentry *e = c->buckets[hash & (c->nbuckets - 1)]; e; e = e->next)
        if (e->hash == hash && e->path_len == len && memcmp(e->path, path, len) == 0)
            return e;
    return NULL;
}

static int grow(hcache *c)
{
    size_t n = c->nbuckets ? c->nbuckets * 2 : 64;
    hentry **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < c->nbuckets; i++)
        for (hentry *e = c->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
    return 0;
}

int tli_httpd_read_at(int fd, uint8_t *buf, uint64_t len, uint64_t off)
{
    uint64_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (uint64_t)n;
    }
    return 0;
}

/* Read a small file whole (it may be shorter than st said if it is being written: then the
 * entry is not made). */
static uint8_t *read_whole(int fd, uint64_t size)
{
    uint8_t *data = malloc(size ? size : 1);
    if (data && tli_httpd_read_at(fd, data, size, 0) != 0) {
        free(data);
        return NULL;
    }
    return data;
}

/* Put a freshly opened small file into the cache (best effort: a failure only means no entry). */
static void insert(hworker *w, const char *path, size_t len, uint64_t hash, int fd,
                   const struct stat *st, const hfile *f)
{
    hcache *c = &w->cache;
    if ((c->count >= c->nbuckets && grow(c) != 0))
        return;
    hentry *e = calloc(1, sizeof *e);
    if (!e || !(e->path = malloc(len)) || !(e->data = read_whole(fd, f->size))) {
        if (e)
            free(e->path);
        free(e);
        return;
    }
    memcpy(e->path, path, len);
    e->path_len = len;
    e->hash = hash;
    e->checked = time(NULL);
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->f = *f;
    e->f.fd = -1;
    e->f.data = e->data;
    e->next = c->buckets[hash & (c->nbuckets - 1)];
    c->buckets[hash & (c->nbuckets - 1)] = e;
    lru_front(c, e);
    c->count++;
    c->bytes += f->size;
    while (c->bytes > c->max_bytes && c->lru_tail && c->lru_tail != e)
        drop(c, c->lru_tail);
}

/* A cached entry, checked against its file when a second has passed since the last check.
 * NULL when it is gone or changed (the caller opens the file afresh). */
static hentry *fresh(hworker *w, hentry *e)
{
    time_t now = time(NULL);
    if (e->checked == now)
        return e;
    int fd;
    struct stat st;
    if (resolve(w, e->path, e->path_len, &fd, &st) != 0) {
        drop(&w->cache, e);
        return NULL;
    }
    close(fd);
    if (st.st_dev != e->dev || st.st_ino != e->ino || (uint64_t)st.st_size != e->f.size ||
        st.st_mtim.tv_sec != e->f.mtime.tv_sec || st.st_mtim.tv_nsec != e->f.mtime.tv_nsec) {
        drop(&w->cache, e);
        return NULL;
    }
    e->checked = now;
    return e;
}

void tli_httpd_cache_free(hcache *c)
{
    while (c->lru_head)
        drop(c, c->lru_head);
    free(c->buckets);
    c->buckets = NULL;
    c->nbuckets = 0;
}

/* ---- the entry point -------------------------------------------------------------------- */

int tli_httpd_file_open(hworker *w, const char *path, size_t len, hfile *f)
{
    hcache *c = &w->cache;
    uint64_t hash = 0;
    if (c->max_bytes) {
        if (!c->key[0] && !c->key[1] && getrandom(c->key, sizeof c->key, 0) != sizeof c->key)
            c->key[0] = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)c;
        hash = tli_siphash24(c->key, path, len);
        hentry *e = lookup(c, path, len, hash);
        if (e && (e = fresh(w, e))) {
            lru_unlink(c, e);
            lru_front(c, e);
            *f = e->f;
            f->entry = e;
            e->refs++;
            hbump(&w->st.cache_hits, 1);
            return 0;
        }
    }
    int fd;
    struct stat st;
    int status = resolve(w, path, len, &fd, &st);
    if (status)
        return status;
    const char *name;
    size_t nlen;
    type_name(w, path, len, &name, &nlen);
    memset(f, 0, sizeof *f);
    describe(f, &st, name, nlen);
    if (c->max_bytes && f->size <= c->max_file && f->size <= c->max_bytes) {
        hbump(&w->st.cache_misses, 1);
        insert(w, path, len, hash, fd, &st, f);
        hentry *e = lookup(c, path, len, hash);
        if (e) {
            close(fd);
            *f = e->f;
            f->entry = e;
            e->refs++;
            return 0;
        }
    }
    f->fd = fd;
    f->data = NULL;
    return 0;
}

void tli_httpd_file_close(hfile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->entry)
        tli_httpd_entry_release(f->entry);
    f->entry = NULL;
}
