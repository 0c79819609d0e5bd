/* file.c - small file helpers the library's modules share (certificates and keys, the ACME
 * state, the OCSP cache): whole text files read, directories made with their parents, and whole
 * files replaced atomically. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/tli.h"

int tli_mkdirs(const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf)
        return errno = ENAMETOOLONG, -1;
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(buf, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

int tli_write_file(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        tli_fmt(err, errlen, "%.200s...: the path is too long", path);
        return -1;
    }
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        tli_fmt(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        return -1;
    }
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            tli_fmt(err, errlen, "%s: cannot write: %s", tmp, strerror(w < 0 ? errno : EIO));
            close(fd);
            unlink(tmp);
            return -1;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        tli_fmt(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        tli_fmt(err, errlen, "%s: cannot rename to %s: %s", tmp, path, strerror(e));
        return -1;
    }
    return 0;
}

#define MAX_PEM_FILE (4u << 20)

char *tli_read_text(const char *path, char *msg, size_t msglen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        tli_fmt(msg, msglen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            char *p = cap <= MAX_PEM_FILE ? realloc(data, cap + 1) : NULL;
            if (!p) {
                tli_fmt(msg, msglen, "%s: too large for a PEM file (over %u bytes) or out of "
                                     "memory", path, MAX_PEM_FILE);
                free(data);
                fclose(f);
                return NULL;
            }
            data = p;
        }
        size_t n = fread(data + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        tli_fmt(msg, msglen, "%s: read error", path);
        free(data);
        return NULL;
    }
    data[len] = '\0';
    return data;
}
