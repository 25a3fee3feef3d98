/*
 * hackback-guest: the guest side of gem5's hack-back method after the boot,
 * in one small static process (the rcS execs it):
 *
 *   hackback-guest hack-back STATE_DIR
 *     before the checkpoint: credit the image's entropy seed to the kernel's
 *     RNG and read the shell a script will most likely use into the page cache;
 *     then `m5 checkpoint`. A restore resumes here: `m5 readfile` into
 *     STATE_DIR/script, run it through its #! interpreter (or /bin/sh), print
 *     `HACKBACK-SCRIPT-EXIT <status>` and `m5 exit`.
 *
 * Why not bash and the m5 utility: under a simulated CPU every process is
 * ~0.6 M instructions (fork, exec, page faults, teardown), ~0.8 s of host time
 * on the atomic CPU, and the kernel's RNG, never credited in a simulated boot,
 * re-extracts its pool for every exec. Doing the m5 operations here (the same
 * address-based calls the m5 utility makes: a load from 0xFFFF0000 +
 * (op << 8) of /dev/mem, arguments in the x86-64 argument registers; see
 * gem5's util/m5/src/abi/x86/m5op_addr.S and include/gem5/asm/generic/m5ops.h)
 * leaves one process, the script's own, after a restore.
 *
 * Backends: the m5 MMIO page (in gem5); HACKBACK_M5=<command> runs that m5
 * command instead (the tests' recording double); `hackback.m5=off` on the
 * kernel command line (read from HACKBACK_CMDLINE, default /proc/cmdline)
 * makes no call at all and prints `HACKBACK-MARK m5 <op>` lines (QEMU).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { M5OP_EXIT = 0x21, M5OP_CHECKPOINT = 0x43, M5OP_READ_FILE = 0x50 };
#define M5OP_ADDR 0xFFFF0000UL
#define CHUNK (256 * 1024) /* what the m5 utility reads per call */

enum backend { MMIO, COMMAND, MARKS };
static enum backend backend;
static const char *m5_command;
static volatile uint8_t *m5_page;
static char chunk[CHUNK];

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static uint64_t m5op(uint64_t op, uint64_t a0, uint64_t a1, uint64_t a2)
{
    uint64_t rax;
    volatile uint8_t *at = m5_page + (op << 8);
    __asm__ __volatile__("mov (%[at]), %%rax"
                         : "=a"(rax)
                         : [at] "r"(at), "D"(a0), "S"(a1), "d"(a2)
                         : "memory");
    return rax;
}

static int map_m5(void)
{
    int fd = open("/dev/mem", O_RDWR | O_SYNC);
    if (fd < 0) {
        fprintf(stderr, "hackback-guest: cannot open /dev/mem for m5 calls: %s\n", strerror(errno));
        return -1;
    }
    void *p = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, M5OP_ADDR);
    close(fd);
    if (p == MAP_FAILED) {
        fprintf(stderr, "hackback-guest: cannot map the m5 page: %s\n", strerror(errno));
        return -1;
    }
    m5_page = p;
    return 0;
}

/* Runs argv with stdout to out_fd (-1: inherited); its exit status as a shell reports it. */
static int run(char *const argv[], int out_fd)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    pid_t pid;
    int err = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err) {
        fprintf(stderr, "hackback-guest: cannot run %s: %s\n", argv[0], strerror(err));
        return 127;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 127;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

static void m5_simple(const char *name, uint64_t op)
{
    if (backend == MARKS) {
        fprintf(stderr, "HACKBACK-MARK m5 %s\n", name);
        return;
    }
    if (backend == COMMAND) {
        char *argv[] = {(char *)m5_command, (char *)name, NULL};
        run(argv, -1);
        return;
    }
    m5op(op, 0, 0, 0);
}

/* `m5 readfile` into path; the number of bytes, or -1. */
static long m5_readfile(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        fprintf(stderr, "hackback-guest: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    long total = 0;
    if (backend == MARKS) {
        fprintf(stderr, "HACKBACK-MARK m5 readfile\n");
    } else if (backend == COMMAND) {
        char *argv[] = {(char *)m5_command, "readfile", NULL};
        run(argv, fd);
        total = lseek(fd, 0, SEEK_END);
    } else {
        /* gem5 writes through the guest's page table: every page of the buffer must be mapped. */
        memset(chunk, 0, sizeof(chunk));
        uint64_t n;
        while ((n = m5op(M5OP_READ_FILE, (uint64_t)(uintptr_t)chunk, sizeof(chunk), (uint64_t)total)) > 0) {
            if (write(fd, chunk, n) != (ssize_t)n) {
                fprintf(stderr, "hackback-guest: writing %s: %s\n", path, strerror(errno));
                close(fd);
                return -1;
            }
            total += (long)n;
        }
    }
    close(fd);
    return total;
}

static int m5_off(void)
{
    const char *path = getenv("HACKBACK_CMDLINE");
    FILE *f = fopen(path ? path : "/proc/cmdline", "r");
    if (!f)
        return 0;
    char line[4096] = " ";
    size_t n = fread(line + 1, 1, sizeof(line) - 3, f);
    fclose(f);
    line[n + 1] = '\0';
    for (char *c = line; *c; c++)
        if (*c == '\n' || *c == '\t')
            *c = ' ';
    strcat(line, " ");
    return strstr(line, " hackback.m5=off ") != NULL;
}

/* A simulated boot gathers almost no entropy, so the kernel's RNG stays
 * uninitialised and every exec and fork re-extracts its pool (BLAKE2s):
 * credit the image's own seed once. Deterministic on purpose: the checkpoint
 * fixes the guest's RNG state for every restore anyway. */
static void seed_rng(const char *seed_path)
{
    struct {
        struct rand_pool_info info;
        unsigned char bytes[64];
    } seed;
    int fd = open(seed_path, O_RDONLY);
    if (fd < 0)
        return;
    ssize_t n = read(fd, seed.bytes, sizeof(seed.bytes));
    close(fd);
    if (n < 32)
        return;
    seed.info.entropy_count = 256;
    seed.info.buf_size = (int)n;
    fd = open("/dev/urandom", O_WRONLY);
    if (fd < 0)
        return;
    if (ioctl(fd, RNDADDENTROPY, &seed.info) < 0)
        fprintf(stderr, "hackback-guest: seeding the RNG failed: %s\n", strerror(errno));
    close(fd);
}

/* Files a restored script is likely to need that the boot has not read:
 * reading them now saves the restore its disk reads. */
static void warm(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return;
    while (read(fd, chunk, sizeof(chunk)) > 0)
        ;
    close(fd);
}

/* The script's argv: its #! line split on blanks, then the script; else /bin/sh. */
static char **interpreter(const char *script, char *line, size_t size, char **argv, int max)
{
    int argc = 0;
    FILE *f = fopen(script, "r");
    if (f && fgets(line, (int)size, f) && line[0] == '#' && line[1] == '!') {
        for (char *tok = strtok(line + 2, " \t\r\n"); tok && argc < max - 2; tok = strtok(NULL, " \t\r\n"))
            argv[argc++] = tok;
    }
    if (f)
        fclose(f);
    if (argc == 0)
        argv[argc++] = "/bin/sh";
    argv[argc++] = (char *)script;
    argv[argc] = NULL;
    return argv;
}

static int hack_back(const char *state)
{
    char script[4096];
    snprintf(script, sizeof(script), "%s/script", state);
    if (backend != COMMAND) {
        seed_rng("/etc/hackback/rng-seed");
        warm("/bin/sh");
    }
    say("HACKBACK-READY booted; taking the checkpoint");
    m5_simple("checkpoint", M5OP_CHECKPOINT);
    /* ---- a restore resumes here ---- */
    say("HACKBACK-RESTORED reading the script (m5 readfile)");
    long size = m5_readfile(script);
    if (size <= 0) {
        if (size == 0)
            say("HACKBACK: m5 readfile gave an empty script: nothing to run, ending the simulation");
        say("HACKBACK-SCRIPT-EXIT %s", size == 0 ? "empty" : "unreadable");
        m5_simple("exit", M5OP_EXIT);
        return 0;
    }
    char line[4096];
    char *argv[64];
    /* /run is noexec: run the script through its interpreter, as the kernel would. */
    int status = run(interpreter(script, line, sizeof(line), argv, 64), -1);
    say("HACKBACK-SCRIPT-EXIT %d", status);
    m5_simple("exit", M5OP_EXIT);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "hack-back") != 0) {
        fprintf(stderr, "usage: hackback-guest hack-back STATE_DIR\n");
        return 2;
    }
    m5_command = getenv("HACKBACK_M5");
    if (m5_off())
        backend = MARKS;
    else if (m5_command && *m5_command)
        backend = COMMAND;
    else if (map_m5() < 0)
        return 1;
    else
        backend = MMIO;
    return hack_back(argv[2]);
}
