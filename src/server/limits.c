/* limits.c - the handshake rate limiter and the per-source connection limit (tlsloop/limits.h). */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <tlsloop/limits.h>

#include "util/tli.h"

/* ---- token bucket ----------------------------------------------------------------------- */

struct tl_rate {
    pthread_mutex_t lock;
    double rate_per_ms, burst, tokens;
    uint64_t last_ms;
};

tl_rate *tl_rate_new(double rate, double burst)
{
    if (!(rate > 0) || !(burst >= 1))
        return NULL;
    tl_rate *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->rate_per_ms = rate / 1000.0;
    r->burst = r->tokens = burst;
    return r;
}

void tl_rate_free(tl_rate *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

bool tl_rate_take(tl_rate *r, uint64_t now_ms)
{
    pthread_mutex_lock(&r->lock);
    if (now_ms > r->last_ms) {
        r->tokens += (double)(now_ms - r->last_ms) * r->rate_per_ms;
        if (r->tokens > r->burst)
            r->tokens = r->burst;
        r->last_ms = now_ms;
    }
    bool ok = r->tokens >= 1.0;
    if (ok)
        r->tokens -= 1.0;
    pthread_mutex_unlock(&r->lock);
    return ok;
}

void tl_rate_put_back(tl_rate *r)
{
    pthread_mutex_lock(&r->lock);
    r->tokens = r->tokens + 1.0 > r->burst ? r->burst : r->tokens + 1.0;
    pthread_mutex_unlock(&r->lock);
}

/* ---- SipHash-2-4: a keyed hash that chosen addresses cannot flood ------------------------ */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                \
    do {                                                                                        \
        v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                               \
        v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                                  \
        v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                                  \
        v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                               \
    } while (0)

static uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t tli_siphash24(const uint64_t key[2], const void *data, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ key[0], v1 = 0x646f72616e646f6dULL ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ key[0], v3 = 0x7465646279746573ULL ^ key[1];
    const uint8_t *in = data;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- per-source counts: a sharded, chained hash table ------------------------------------ */

#define SHARDS 64
#define KEY_LEN 17 /* family, then 16 address bytes (IPv4 as ::ffff:a.b.c.d) */

typedef struct entry {
    uint8_t key[KEY_LEN];
    unsigned count;
    struct entry *next;
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    entry **buckets;
    size_t nbuckets, nentries;
} shard;

struct tl_addr_limit {
    unsigned max;
    unsigned v6_prefix;
    uint64_t key[2];
    shard shards[SHARDS];
};

tl_addr_limit *tl_addr_limit_new(unsigned max_per_source, unsigned ipv6_prefix)
{
    if (max_per_source == 0 || ipv6_prefix == 0 || ipv6_prefix > 128)
        return NULL;
    tl_addr_limit *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->max = max_per_source;
    l->v6_prefix = ipv6_prefix;
    if (getrandom(l->key, sizeof l->key, 0) != (ssize_t)sizeof l->key) {
        free(l);
        return NULL;
    }
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_init(&l->shards[i].lock, NULL);
    return l;
}

void tl_addr_limit_free(tl_addr_limit *l)
{
    if (!l)
        return;
    for (int i = 0; i < SHARDS; i++) {
        shard *s = &l->shards[i];
        for (size_t b = 0; b < s->nbuckets; b++)
            for (entry *e = s->buckets[b], *next; e; e = next) {
                next = e->next;
                free(e);
            }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(l);
}

/* The source's key; false for a family we do not count. */
static bool make_key(const tl_addr_limit *l, const struct sockaddr *sa, uint8_t key[KEY_LEN])
{
    memset(key, 0, KEY_LEN);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        key[11] = key[12] = 0xff;
        memcpy(key + 13, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family != AF_INET6)
        return false;
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0) { /* an IPv4 client on a dual-stack socket */
        key[0] = 4;
        memcpy(key + 1, a, 16);
        return true;
    }
    key[0] = 6;
    unsigned bits = l->v6_prefix;
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits >= 8 ? 8 : bits;
        key[1 + i] = (uint8_t)(a[i] & (0xff00u >> keep));
        bits -= keep;
    }
    return true;
}

/* The source's key, its hash and its shard; NULL for a family we do not count. */
static shard *locate(tl_addr_limit *l, const struct sockaddr *addr, uint8_t key[KEY_LEN],
                     uint64_t *h)
{
    if (!make_key(l, addr, key))
        return NULL;
    *h = tli_siphash24(l->key, key, KEY_LEN);
    return &l->shards[*h % SHARDS];
}

static entry **find(shard *s, uint64_t h, const uint8_t key[KEY_LEN])
{
    if (!s->nbuckets)
        return NULL;
    entry **pp = &s->buckets[(h / SHARDS) & (s->nbuckets - 1)];
    while (*pp && memcmp((*pp)->key, key, KEY_LEN) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Double the buckets when chains grow past two on average; a failed growth only slows lookups. */
static void maybe_grow(shard *s, const tl_addr_limit *l)
{
    if (s->nentries < 2 * s->nbuckets && s->nbuckets)
        return;
    size_t n = s->nbuckets ? s->nbuckets * 2 : 16;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (entry *e = s->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t at = (tli_siphash24(l->key, e->key, KEY_LEN) / SHARDS) & (n - 1);
            e->next = b[at];
            b[at] = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

bool tl_addr_limit_acquire(tl_addr_limit *l, const struct sockaddr *addr)
{
    uint8_t key[KEY_LEN];
    uint64_t h;
    shard *s = locate(l, addr, key, &h);
    if (!s)
        return false;
    bool ok = false;
    pthread_mutex_lock(&s->lock);
    maybe_grow(s, l);
    entry **pp = find(s, h, key);
    if (pp && *pp) {
        if ((*pp)->count < l->max) {
            (*pp)->count++;
            ok = true;
        }
    } else if (pp) {
        entry *e = malloc(sizeof *e);
        if (e) { /* out of memory: refuse rather than count nothing */
            memcpy(e->key, key, KEY_LEN);
            e->count = 1;
            e->next = NULL;
            *pp = e;
            s->nentries++;
            ok = true;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

void tl_addr_limit_release(tl_addr_limit *l, const struct sockaddr *addr)
{
    uint8_t key[KEY_LEN];
    uint64_t h;
    shard *s = locate(l, addr, key, &h);
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    entry **pp = find(s, h, key);
    if (pp && *pp && --(*pp)->count == 0) {
        entry *e = *pp;
        *pp = e->next;
        free(e);
        s->nentries--;
    }
    pthread_mutex_unlock(&s->lock);
}

unsigned tl_addr_limit_count(tl_addr_limit *l, const struct sockaddr *addr)
{
    uint8_t key[KEY_LEN];
    uint64_t h;
    shard *s = locate(l, addr, key, &h);
    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    entry **pp = find(s, h, key);
    unsigned n = pp && *pp ? (*pp)->count : 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

size_t tl_addr_limit_sources(tl_addr_limit *l)
{
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&l->shards[i].lock);
        n += l->shards[i].nentries;
        pthread_mutex_unlock(&l->shards[i].lock);
    }
    return n;
}
