/*
 * A pointer chase whose working set is an argument: the region of interest
 * (bracketed by m5 workbegin / workend) follows a random cycle through
 * WORKING_SET bytes of 64-byte nodes, one dependent load per step, so its
 * cache miss rate follows the working set: one that fits in the 32 KiB L1D
 * hits, one well beyond it misses.
 *
 *   chase WORKING_SET_BYTES STEPS [OUT_FILE]
 *
 * Built static for x86-64 (examples/pointer-chase/build.sh). The m5 calls are
 * the address-based ones the m5 utility makes (a load from 0xFFFF0000 +
 * (op << 8) of /dev/mem); without /dev/mem (not under gem5) it runs unmarked.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum { M5OP_WORK_BEGIN = 0x5a, M5OP_WORK_END = 0x5b };

static volatile uint8_t *m5_page;

static void m5op(uint64_t op)
{
    if (!m5_page)
        return;
    uint64_t rax;
    __asm__ __volatile__("mov (%[at]), %%rax" : "=a"(rax) : [at] "r"(m5_page + (op << 8)), "D"(0), "S"(0) : "memory");
    (void)rax;
}

static void map_m5(void)
{
    int fd = open("/dev/mem", O_RDWR | O_SYNC);
    if (fd < 0)
        return;
    void *p = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0xFFFF0000UL);
    close(fd);
    if (p != MAP_FAILED)
        m5_page = p;
}

struct node {
    struct node *next;
    char pad[64 - sizeof(struct node *)];
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: chase WORKING_SET_BYTES STEPS [OUT_FILE]\n");
        return 2;
    }
    size_t n = strtoull(argv[1], NULL, 0) / sizeof(struct node);
    long steps = strtol(argv[2], NULL, 0);
    if (n < 2 || steps < 1) {
        fprintf(stderr, "chase: the working set must hold two 64-byte nodes, and STEPS must be positive\n");
        return 2;
    }
    struct node *nodes = aligned_alloc(64, n * sizeof(struct node));
    size_t *order = malloc(n * sizeof(size_t));
    if (!nodes || !order) {
        fprintf(stderr, "chase: out of memory\n");
        return 1;
    }
    /* Sattolo's shuffle: one cycle through every node, in a fixed pseudo-random order. */
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t j = x % i, t = order[i];
        order[i] = order[j], order[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        nodes[order[i]].next = &nodes[order[(i + 1) % n]];
    free(order);
    struct node *p = &nodes[0];
    for (size_t i = 0; i < n; i++) /* one pass to warm what fits */
        p = p->next;

    map_m5();
    double start = now();
    m5op(M5OP_WORK_BEGIN);
    for (long i = 0; i < steps; i++)
        p = p->next;
    m5op(M5OP_WORK_END);
    double seconds = now() - start;

    FILE *out = argc > 3 ? fopen(argv[3], "w") : stdout;
    if (!out) {
        perror(argv[3]);
        return 1;
    }
    fprintf(out, "working_set_bytes=%zu steps=%ld ns_per_step=%.3f end=%p\n", n * sizeof(struct node), steps,
            seconds * 1e9 / steps, (void *)p);
    return out == stdout || fclose(out) == 0 ? 0 : 1;
}
