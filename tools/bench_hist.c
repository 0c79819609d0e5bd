/* bench_hist.c - the latency histogram of `tlsloop bench`: log-linear buckets over nanoseconds,
 * 128 per power of two (each within 0.8% of its values), exact below 256 ns; merged over threads;
 * a percentile is the upper edge of its bucket, never above the largest value seen. */
#include <string.h>

#include "bench.h"

static unsigned index_of(uint64_t v)
{
    if (v < (2u << HIST_SUB_BITS))
        return (unsigned)v;
    unsigned msb = 63 - (unsigned)__builtin_clzll(v);
    unsigned e = msb - HIST_SUB_BITS;
    unsigned idx = ((e + 1) << HIST_SUB_BITS) + (unsigned)((v >> e) - (1u << HIST_SUB_BITS));
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The largest value that falls in bucket idx. */
static uint64_t upper_of(unsigned idx)
{
    if (idx < (2u << HIST_SUB_BITS))
        return idx;
    unsigned e = (idx >> HIST_SUB_BITS) - 1;
    uint64_t m = (1u << HIST_SUB_BITS) + (idx & ((1u << HIST_SUB_BITS) - 1));
    return ((m + 1) << e) - 1;
}

void hist_add(hist *h, uint64_t v)
{
    h->b[index_of(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
    if (!h->min || v < h->min)
        h->min = v;
}

void hist_merge(hist *into, const hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
    if (from->min && (!into->min || from->min < into->min))
        into->min = from->min;
}

uint64_t hist_percentile(const hist *h, double p)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->count + 0.5), seen = 0;
    if (want < 1)
        want = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t u = upper_of(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}
