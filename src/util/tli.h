/* src/util/tli.h - library-internal declarations shared between modules' .c files: tli_ names,
 * never exported (what the tls layer shares privately is in src/tls/tli_tls.h). */
#ifndef TLSLOOP_TLI_H
#define TLSLOOP_TLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


#include <tlsloop/status.h>

/* SipHash-2-4 of data under a 128-bit key (limits.c): a hash that chosen inputs cannot flood. */
uint64_t tli_siphash24(const uint64_t key[2], const void *data, size_t len);

/* snprintf into a fixed buffer, always terminated, never failing (status.c). */
void tli_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A whole small text file (at most 4 MiB: certificates, keys) as a NUL-terminated heap string, or
 * NULL with the reason in msg (file.c; msg may be NULL with msglen 0). */
char *tli_read_text(const char *path, char *msg, size_t msglen);
/* Make a directory and its missing parents, mode 0700 (file.c). 0, or -1 with errno. */
int tli_mkdirs(const char *path);
/* Replace path with len bytes of data atomically: written to path.tmp (mode 0600), fsync'd and
 * renamed over it, so a crash leaves the old file or the new one, never half of one (file.c).
 * 0, or -1 with the reason in err. */
int tli_write_file(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* Prometheus text (format 0.0.4) for the metrics pages (server_metrics.c): append a line, a
 * family's HELP and TYPE lines, a family with its one sample, or one sample of a family with a
 * label (its value escaped as the format wants); names get the "tlsloop_" prefix. rc turns -1 once
 * a line did not fit or memory ran out. */
typedef struct tli_prom {
    struct tl_buf *out;
    int rc;
} tli_prom;
void tli_prom_emit(tli_prom *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tli_prom_family(tli_prom *w, const char *name, const char *type, const char *help);
void tli_prom_one(tli_prom *w, const char *name, const char *type, const char *help, double v);
void tli_prom_sample(tli_prom *w, const char *name, const char *label, const char *value,
                     uint64_t v);

#endif /* TLSLOOP_TLI_H */
