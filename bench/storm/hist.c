/*
 * bench/storm/hist.c - the latency histograms: log-linear, 128 sub-buckets per power of two over
 * 1 ns .. 1100 s; a percentile is the upper edge of its bucket.
 */
#include "storm.h"

static unsigned hist_index(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    if (v >= (1ull << (MAX_EXP + 1)))
        v = (1ull << (MAX_EXP + 1)) - 1;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned sub = (unsigned)(v >> (e - SUB_BITS)) - SUB;
    return SUB + (e - SUB_BITS) * SUB + sub;
}

/* The highest value a bucket holds: a percentile is never reported lower than it was. */
static uint64_t hist_upper(unsigned i)
{
    if (i < SUB)
        return i;
    unsigned e = (i - SUB) / SUB + SUB_BITS, sub = (i - SUB) % SUB;
    return ((uint64_t)(sub + SUB + 1) << (e - SUB_BITS)) - 1;
}

void hist_add(hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
}

/* The value at rank ceil(p * n), in milliseconds (0 when empty). */
double hist_ms(const hist *h, double p)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(p * (double)h->n);
    if ((double)rank < p * (double)h->n)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);
            return (double)(v < h->max ? v : h->max) / 1e6;
        }
    }
    return (double)h->max / 1e6;
}
