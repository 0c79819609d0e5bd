/* hiccups.c - the machine's own latency noise: how often a thread that never sleeps loses its CPU
 * for a while, a floor under any p99 measured here (method: bench/README.md; perf.py shows it).
 * usage: hiccups [--seconds S] [--json] CPU...     (default: 3 s on CPUs 0 and 1) */
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CPUS 64

typedef struct probe {
    int cpu;
    double seconds;
    unsigned long over50, over200, over1000;
    double max_us, lost_us;
    bool pinned;
} probe;

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void *run(void *arg)
{
    probe *p = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(p->cpu, &set);
    p->pinned = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
    double start = now_us(), last = start, end = start + p->seconds * 1e6;
    for (;;) {
        double t = now_us(), gap = t - last;
        last = t;
        if (t >= end)
            break;
        if (gap <= 50)
            continue;
        p->over50++;
        p->over200 += gap > 200;
        p->over1000 += gap > 1000;
        p->lost_us += gap;
        if (gap > p->max_us)
            p->max_us = gap;
    }
    return NULL;
}

static int usage(const char *why)
{
    fprintf(stderr, "hiccups: %s\nusage: hiccups [--seconds S] [--json] CPU...\n", why);
    return 2;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    bool json = false;
    probe probes[MAX_CPUS];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = strtod(argv[++i], &end);
            if (*end || seconds <= 0 || seconds > 600)
                return usage("--seconds needs a number from 0 to 600");
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--help")) {
            printf("usage: hiccups [--seconds S] [--json] CPU...   (default: 3 s on CPUs 0 and 1)\n"
                   "A spinning thread per CPU counts how often, and for how long, it lost its CPU.\n");
            return 0;
        } else {
            long cpu = strtol(argv[i], &end, 10);
            if (*end || cpu < 0 || cpu >= CPU_SETSIZE || n == MAX_CPUS)
                return usage("a CPU is a number such as 0");
            probes[n++] = (probe){.cpu = (int)cpu};
        }
    }
    if (n == 0) {
        probes[n++] = (probe){.cpu = 0};
        probes[n++] = (probe){.cpu = 1};
    }
    pthread_t th[MAX_CPUS];
    for (int i = 0; i < n; i++) {
        probes[i].seconds = seconds;
        if (pthread_create(&th[i], NULL, run, &probes[i]) != 0)
            return usage("cannot start a thread");
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    if (json)
        printf("{\"seconds\": %.1f, \"cpus\": [", seconds);
    for (int i = 0; i < n; i++) {
        probe *p = &probes[i];
        if (!p->pinned) {
            fprintf(stderr, "hiccups: cannot run on CPU %d\n", p->cpu);
            return 1;
        }
        if (json)
            printf("%s{\"cpu\": %d, \"over_50us_per_s\": %.1f, \"over_200us_per_s\": %.1f, "
                   "\"over_1ms_per_s\": %.2f, \"max_us\": %.0f, \"lost_pct\": %.3f}",
                   i ? ", " : "", p->cpu, p->over50 / seconds, p->over200 / seconds,
                   p->over1000 / seconds, p->max_us, p->lost_us / (seconds * 1e4));
        else
            printf("CPU %d: gaps per second: %.1f over 50 us, %.1f over 200 us, %.2f over 1 ms; "
                   "longest %.2f ms; %.3f%% of the time lost\n", p->cpu, p->over50 / seconds,
                   p->over200 / seconds, p->over1000 / seconds, p->max_us / 1e3,
                   p->lost_us / (seconds * 1e4));
    }
    if (json)
        printf("]}\n");
    return 0;
}
