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
