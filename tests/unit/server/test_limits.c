/* test_limits.c - the handshake rate limiter and the per-source connection limit. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <tlsloop/limits.h>

#include "test.h"
#include "util/tli.h"

static struct sockaddr_storage addr(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
        s->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &s->sin6_addr);
    } else {
        struct sockaddr_in *s = (struct sockaddr_in *)&ss;
        s->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &s->sin_addr);
    }
    return ss;
}
#define SA(x) ((struct sockaddr *)&(x))

TEST(siphash_reference_vector)
{
    /* The reference test vector of SipHash-2-4: key 00..0f, input 00..0e. */
    uint8_t k[16], in[15];
    for (int i = 0; i < 16; i++)
        k[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        in[i] = (uint8_t)i;
    uint64_t key[2] = {0, 0};
    for (int i = 7; i >= 0; i--) {
        key[0] = (key[0] << 8) | k[i];
        key[1] = (key[1] << 8) | k[8 + i];
    }
    CHECK(tli_siphash24(key, in, 15) == 0xa129ca6149be45e5ULL);
    CHECK(tli_siphash24(key, in, 0) == 0x726fdb47dd0e0e31ULL);
}

TEST(rate_bucket)
{
    tl_rate *r = tl_rate_new(10, 3); /* 10 per second, bursts of 3 */
    REQUIRE(r);
    CHECK(tl_rate_take(r, 1000) && tl_rate_take(r, 1000) && tl_rate_take(r, 1000));
    CHECK(!tl_rate_take(r, 1000));
    CHECK(!tl_rate_take(r, 1099)); /* 0.99 of a token */
    CHECK(tl_rate_take(r, 1100));
    CHECK(!tl_rate_take(r, 1100));
    /* A token given back is there again, but never above the burst. */
    tl_rate_put_back(r);
    CHECK(tl_rate_take(r, 1100));
    CHECK(!tl_rate_take(r, 1100));
    /* A long quiet spell saves up the burst, no more. */
    CHECK(tl_rate_take(r, 60000) && tl_rate_take(r, 60000) && tl_rate_take(r, 60000));
    CHECK(!tl_rate_take(r, 60000));
    /* Time going backwards (a second loop's older reading) adds nothing and breaks nothing. */
    CHECK(!tl_rate_take(r, 50000));
    tl_rate_free(r);
    CHECK(tl_rate_new(0, 1) == NULL && tl_rate_new(1, 0.5) == NULL);
}

TEST(addr_limit_basics)
{
    tl_addr_limit *l = tl_addr_limit_new(2, 64);
    REQUIRE(l);
    struct sockaddr_storage a = addr("192.0.2.1"), b = addr("192.0.2.2");
    CHECK(tl_addr_limit_acquire(l, SA(a)) && tl_addr_limit_acquire(l, SA(a)));
    CHECK(!tl_addr_limit_acquire(l, SA(a)));
    CHECK(tl_addr_limit_acquire(l, SA(b)));
    CHECK_EQ_INT(tl_addr_limit_count(l, SA(a)), 2);
    tl_addr_limit_release(l, SA(a));
    CHECK(tl_addr_limit_acquire(l, SA(a)));
    /* IPv4 on a dual-stack socket is the same source as plain IPv4. */
    struct sockaddr_storage mapped = addr("::ffff:192.0.2.2");
    CHECK_EQ_INT(tl_addr_limit_count(l, SA(mapped)), 1);
    CHECK(tl_addr_limit_acquire(l, SA(mapped)));
    CHECK(!tl_addr_limit_acquire(l, SA(b)));
    /* IPv6 by /64. */
    struct sockaddr_storage x = addr("2001:db8::1"), y = addr("2001:db8::ffff:2");
    struct sockaddr_storage z = addr("2001:db8:0:1::1");
    CHECK(tl_addr_limit_acquire(l, SA(x)) && tl_addr_limit_acquire(l, SA(y)));
    CHECK(!tl_addr_limit_acquire(l, SA(x)));
    CHECK(tl_addr_limit_acquire(l, SA(z)));
    /* Not an IP address: refused, nothing counted. */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    CHECK(!tl_addr_limit_acquire(l, (struct sockaddr *)&un));
    CHECK_EQ_INT(tl_addr_limit_sources(l), 4);
    /* Releasing everything leaves the table empty. */
    tl_addr_limit_release(l, SA(a));
    tl_addr_limit_release(l, SA(a));
    tl_addr_limit_release(l, SA(b));
    tl_addr_limit_release(l, SA(b));
    tl_addr_limit_release(l, SA(x));
    tl_addr_limit_release(l, SA(y));
    tl_addr_limit_release(l, SA(z));
    tl_addr_limit_release(l, SA(z)); /* one too many: harmless */
    CHECK_EQ_INT(tl_addr_limit_sources(l), 0);
    tl_addr_limit_free(l);
    CHECK(tl_addr_limit_new(0, 64) == NULL && tl_addr_limit_new(1, 129) == NULL);
}

/* 100,000 sources: the table grows, every count is right, and it empties again. */
TEST(addr_limit_many_sources)
{
    tl_addr_limit *l = tl_addr_limit_new(1, 128);
    REQUIRE(l);
    struct sockaddr_in s = {.sin_family = AF_INET};
    for (uint32_t i = 0; i < 100000; i++) {
        s.sin_addr.s_addr = htonl(0x0a000000u + i);
        REQUIRE(tl_addr_limit_acquire(l, SA(s)));
    }
    CHECK_EQ_INT(tl_addr_limit_sources(l), 100000);
    s.sin_addr.s_addr = htonl(0x0a000000u + 4242);
    CHECK(!tl_addr_limit_acquire(l, SA(s)));
    for (uint32_t i = 0; i < 100000; i++) {
        s.sin_addr.s_addr = htonl(0x0a000000u + i);
        tl_addr_limit_release(l, SA(s));
    }
    CHECK_EQ_INT(tl_addr_limit_sources(l), 0);
    tl_addr_limit_free(l);
}

/* Eight threads on one source: the limit holds at every moment and the count ends at zero. */
typedef struct worker {
    tl_addr_limit *l;
    int over, refused;
} worker;

static void *hammer(void *arg)
{
    worker *w = arg;
    struct sockaddr_storage a = addr("198.51.100.7");
    for (int i = 0; i < 20000; i++) {
        if (tl_addr_limit_acquire(w->l, SA(a))) {
            if (tl_addr_limit_count(w->l, SA(a)) > 4)
                w->over++;
            tl_addr_limit_release(w->l, SA(a));
        } else {
            w->refused++;
        }
    }
    return NULL;
}

TEST(addr_limit_threads)
{
    tl_addr_limit *l = tl_addr_limit_new(4, 64);
    worker w[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (worker){l, 0, 0};
        pthread_create(&t[i], NULL, hammer, &w[i]);
    }
    int over = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        over += w[i].over;
    }
    CHECK_EQ_INT(over, 0);
    struct sockaddr_storage a = addr("198.51.100.7");
    CHECK_EQ_INT(tl_addr_limit_count(l, SA(a)), 0);
    CHECK_EQ_INT(tl_addr_limit_sources(l), 0);
    tl_addr_limit_free(l);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(siphash_reference_vector);
    RUN(rate_bucket);
    RUN(addr_limit_basics);
    RUN(addr_limit_many_sources);
    RUN(addr_limit_threads);
    TEST_MAIN_END();
}
