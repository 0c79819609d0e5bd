/*
 * tools/bench.h - the parts of `tlsloop bench` shared between its files: the latency histogram
 * (bench_hist.c) and the error table.
 */
#ifndef TLSLOOP_TOOLS_BENCH_H
#define TLSLOOP_TOOLS_BENCH_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_BUCKETS (58u << HIST_SUB_BITS)   /* every uint64_t value has a bucket */

typedef struct hist {
    uint64_t count, sum, min, max;
    uint64_t b[HIST_BUCKETS];
} hist;

void hist_add(hist *h, uint64_t v);
void hist_merge(hist *into, const hist *from);
/* The value at percentile p (0-100]: the upper edge of its bucket, at most the maximum. */
uint64_t hist_percentile(const hist *h, double p);

#endif /* TLSLOOP_TOOLS_BENCH_H */
