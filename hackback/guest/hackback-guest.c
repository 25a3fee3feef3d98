/*
 * hackback-guest: the guest side of gem5's hack-back method after the boot,
 * in one small static process (the rcS execs it):
 *
 *   hackback-guest hack-back STATE_DIR
 *     before the checkpoint: credit the image's entropy seed to the kernel's
 *     RNG, read the shell a script will most likely use into the page cache and
 *     print what the guest can hold (`HACKBACK-GUEST mem_available_kib=…
 *     root_free_kib=…`); then `m5 checkpoint`. A restore resumes here: `m5
 *     readfile` into STATE_DIR/script, run it through its #! interpreter (or
 *     /bin/sh) in /root/payload, print `HACKBACK-SCRIPT-EXIT <status>`, send
 *     what it left in /root/results to the host (`m5 writefile`, one tar
 *     stream, hackback-results.tar) and `m5 exit`.
 *
 *   hackback-checkpoint (a link to this program), from a restored script:
 *     `m5 checkpoint` (a child checkpoint, when the restore saves one); a
 *     restore of the child resumes here and reads and runs its script as above.
 *
 *   A readfile that starts with `#!/bin/sh` and `# HACKBACK-PAYLOAD v1
 *   script=S script_bytes=N index=I index_bytes=J` carries a payload: the
 *   script is bytes S..S+N, the index at I a line per entry (TYPE MODE SIZE
 *   OFFSET PATH TARGET, tab-separated). Each file is created in /root/payload,
 *   mapped, and gem5 writes its bytes straight into those pages (m5 readfile
 *   at the file's offset): no copy in the guest. Then the script runs. The
 *   shell header before S does the same with dd, for images made before this
 *   helper.
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
 * makes no call at all and prints `HACKBACK-MARK m5 <op>` lines (QEMU);
 * `hackback.m5=command` runs /sbin/m5 for each call (an image whose m5 is a
 * test double, booted under QEMU).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { M5OP_EXIT = 0x21, M5OP_CHECKPOINT = 0x43, M5OP_WRITE_FILE = 0x4F, M5OP_READ_FILE = 0x50 };
/* The script's working directory, the payload's files in it; and where what the
 * script leaves lands in the run directory. Overridable only so the tests can
 * run this on a host (HACKBACK_PAYLOAD_DIR, HACKBACK_RESULTS_DIR). */
static const char *PAYLOAD_DIR = "/root/payload";
static const char *RESULTS_DIR = "/root/results";
#define RESULTS_FILE "hackback-results.tar"
#define PAYLOAD_MAGIC "# HACKBACK-PAYLOAD v1 "
#define M5OP_ADDR 0xFFFF0000UL
#define CHUNK (256 * 1024) /* what the m5 utility reads per call */

enum backend { MMIO, COMMAND, MARKS };
static enum backend backend;
static const char *m5_command;
static const char *state_dir; /* hack-back STATE_DIR: the script and scratch files */
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

static uint64_t m5op(uint64_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3)
{
    uint64_t rax;
    volatile uint8_t *at = m5_page + (op << 8);
    register uint64_t rcx __asm__("rcx") = a3;
    __asm__ __volatile__("mov (%[at]), %%rax"
                         : "=a"(rax)
                         : [at] "r"(at), "D"(a0), "S"(a1), "d"(a2), "r"(rcx)
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
    m5op(op, 0, 0, 0, 0);
}

/* The host's readfile as ranges: through the m5 page (MMIO), or (COMMAND: the
 * tests' m5 double) from a copy the m5 command wrote once. */
static const char *readfile_copy;

/* Chunks of the host's readfile from byte `from` up to `to` (0: its end), each
 * handed to `sink`; the number of bytes read, or -1 if the sink failed. */
static long read_range(uint64_t from, uint64_t to, int (*sink)(const char *, size_t, void *), void *arg)
{
    int fd = backend == COMMAND ? open(readfile_copy, O_RDONLY) : -1;
    if (backend == COMMAND && (fd < 0 || lseek(fd, (off_t)from, SEEK_SET) < 0))
        return fd < 0 ? 0 : (close(fd), 0);
    /* gem5 writes through the guest's page table: every page of the buffer must be mapped. */
    memset(chunk, 0, sizeof(chunk));
    long total = 0;
    for (;;) {
        uint64_t at = from + (uint64_t)total, want = sizeof(chunk);
        if (to && to - at < want)
            want = to - at;
        if (want == 0)
            break;
        long n = backend == COMMAND ? (long)read(fd, chunk, want)
                                    : (long)m5op(M5OP_READ_FILE, (uint64_t)(uintptr_t)chunk, want, at, 0);
        if (n <= 0)
            break;
        if (sink(chunk, (size_t)n, arg) < 0) {
            total = -1;
            break;
        }
        total += n;
    }
    if (fd >= 0)
        close(fd);
    return total;
}

static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static int to_fd(const char *buf, size_t n, void *arg)
{
    return write_all(*(int *)arg, buf, n);
}

struct memory { char *buf; size_t used, size; };

static int to_mem(const char *buf, size_t n, void *arg)
{
    struct memory *m = arg;
    if (n > m->size - m->used)
        n = m->size - m->used;
    memcpy(m->buf + m->used, buf, n);
    m->used += n;
    return 0;
}

/* Bytes from..to of the readfile (to = 0: to its end) into path; the count, or -1. */
static long readfile_to(const char *path, uint64_t from, uint64_t to)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        fprintf(stderr, "hackback-guest: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    long total = read_range(from, to, to_fd, &fd);
    close(fd);
    return total;
}

/* `m5 readfile`, once, for the COMMAND backend. */
static void command_readfile(const char *copy)
{
    int fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *argv[] = {(char *)m5_command, "readfile", NULL};
    if (fd >= 0) {
        run(argv, fd);
        close(fd);
    }
    readfile_copy = copy;
}

/* The hackback.m5= kernel parameter (read from HACKBACK_CMDLINE, default
 * /proc/cmdline) into `value` (empty: not given). */
static void m5_param(char *value, size_t size)
{
    const char *path = getenv("HACKBACK_CMDLINE");
    FILE *f = fopen(path ? path : "/proc/cmdline", "r");
    value[0] = '\0';
    if (!f)
        return;
    char line[4096] = " ";
    size_t n = fread(line + 1, 1, sizeof(line) - 3, f);
    fclose(f);
    line[n + 1] = '\0';
    for (char *c = line; *c; c++)
        if (*c == '\n' || *c == '\t')
            *c = ' ';
    char *at = strstr(line, " hackback.m5=");
    if (!at)
        return;
    at += strlen(" hackback.m5=");
    size_t len = strcspn(at, " ");
    if (len >= size)
        len = size - 1;
    memcpy(value, at, len);
    value[len] = '\0';
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

/* What the guest can hold, for the host to check payloads against before a restore. */
static void report_room(void)
{
    long mem_kib = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "MemAvailable: %ld kB", &mem_kib) == 1)
            break;
    if (f)
        fclose(f);
    struct statvfs vfs;
    long root_kib = statvfs("/root", &vfs) == 0 ? (long)(vfs.f_bavail * (vfs.f_frsize / 1024)) : -1;
    say("HACKBACK-GUEST mem_available_kib=%ld root_free_kib=%ld", mem_kib, root_kib);
}

struct payload { unsigned long script, script_bytes, index, index_bytes; };

/* The header of a readfile that carries a payload, from its first bytes. */
static int payload_header(struct payload *p)
{
    char head[512] = {0};
    struct memory h = {head, 0, sizeof(head) - 1};
    read_range(0, sizeof(head) - 1, to_mem, &h);
    if (strncmp(head, "#!/bin/sh\n" PAYLOAD_MAGIC, strlen("#!/bin/sh\n" PAYLOAD_MAGIC)) != 0)
        return 0;
    return sscanf(head + strlen("#!/bin/sh\n" PAYLOAD_MAGIC), "script=%lu script_bytes=%lu index=%lu index_bytes=%lu",
                  &p->script, &p->script_bytes, &p->index, &p->index_bytes) == 4;
}

/* mkdir -p of the directories above `path` (which is under PAYLOAD_DIR). */
static void make_parents(char *path)
{
    for (char *c = path + strlen(PAYLOAD_DIR) + 1; *c; c++) {
        if (*c == '/') {
            *c = '\0';
            mkdir(path, 0755);
            *c = '/';
        }
    }
}

/* One file of the payload: created, mapped, its pages touched (gem5 writes through
 * the guest's page table), then filled by gem5 from the readfile at `offset`. */
static int place_file(const char *path, unsigned mode, uint64_t size, uint64_t offset)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, mode & 07777);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        return fd < 0 ? -1 : (close(fd), -1);
    int ok = 0;
    if (size > 0) {
        long page = sysconf(_SC_PAGESIZE);
        volatile char *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            return -1;
        }
        for (uint64_t at = 0; at < size; at += (uint64_t)page)
            map[at] = 0;
        for (uint64_t at = 0; at < size && ok == 0;) {
            uint64_t want = size - at < (8u << 20) ? size - at : (8u << 20);
            uint64_t n = backend == MMIO ? m5op(M5OP_READ_FILE, (uint64_t)(uintptr_t)(map + at), want, offset + at, 0) : 0;
            if (backend == COMMAND) { /* the tests' double: from the readfile copy */
                int in = open(readfile_copy, O_RDONLY);
                ssize_t r = in >= 0 ? pread(in, (char *)map + at, want, (off_t)(offset + at)) : -1;
                n = r > 0 ? (uint64_t)r : 0;
                if (in >= 0)
                    close(in);
            }
            if (n == 0)
                ok = -1;
            at += n;
        }
        munmap((void *)map, size);
    }
    close(fd);
    return ok;
}

/* A relative path with no ".." component: it stays inside PAYLOAD_DIR. */
static int inside(const char *rel)
{
    if (rel[0] == '/' || rel[0] == '\0')
        return 0;
    for (const char *c = rel; c; c = strchr(c, '/'), c = c ? c + 1 : NULL)
        if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0'))
            return 0;
    return 1;
}

/* The payload, entry by entry from its index, into PAYLOAD_DIR. */
static int unpack_payload(const struct payload *p)
{
    char *index = calloc(1, p->index_bytes + 1);
    struct memory m = {index, 0, p->index_bytes};
    if (!index || read_range(p->index, p->index + p->index_bytes, to_mem, &m) != (long)p->index_bytes)
        return -1;
    int bad = 0;
    char *save = NULL;
    for (char *line = strtok_r(index, "\n", &save); line && !bad; line = strtok_r(NULL, "\n", &save)) {
        char *f[6] = {0};
        int n = 0;
        for (char *c = line; n < 6; n++) { /* split on tabs, keeping empty fields */
            f[n] = c;
            c = strchr(c, '\t');
            if (!c)
                break;
            *c++ = '\0';
        }
        if (n < 4 || !inside(f[4])) {
            bad = 1;
            break;
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", PAYLOAD_DIR, f[4]);
        make_parents(path);
        if (f[0][0] == 'f')
            bad = place_file(path, (unsigned)strtoul(f[1], NULL, 8), strtoull(f[2], NULL, 10), strtoull(f[3], NULL, 10)) < 0;
        else if (f[0][0] == 'd')
            bad = mkdir(path, (mode_t)strtoul(f[1], NULL, 8)) < 0 && errno != EEXIST;
        else if (f[0][0] == 'l')
            bad = n < 5 || symlink(f[5], path) < 0;
    }
    free(index);
    return bad ? -1 : 0;
}

struct writer { uint64_t offset; };

static int to_host(const char *buf, size_t n, void *arg)
{
    struct writer *w = arg;
    memcpy(chunk, buf, n); /* a buffer whose pages are mapped */
    if (m5op(M5OP_WRITE_FILE, (uint64_t)(uintptr_t)chunk, n, w->offset, (uint64_t)(uintptr_t)RESULTS_FILE) != n)
        return -1;
    w->offset += n;
    return 0;
}

/* What the script left in RESULTS_DIR, to the host as one tar stream (m5 writefile). */
static void send_results(void)
{
    DIR *d = opendir(RESULTS_DIR);
    struct dirent *e;
    int any = 0;
    while (d && (e = readdir(d)))
        any |= strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    if (!any || backend == MARKS) {
        if (any)
            fprintf(stderr, "HACKBACK-MARK m5 writefile %s\n", RESULTS_FILE);
        return;
    }
    if (backend == COMMAND) {
        char tarfile[4200];
        snprintf(tarfile, sizeof(tarfile), "%s/" RESULTS_FILE, state_dir);
        char *tar[] = {"/bin/tar", "-c", "-C", (char *)RESULTS_DIR, "-f", tarfile, ".", NULL};
        char *send[] = {(char *)m5_command, "writefile", tarfile, RESULTS_FILE, NULL};
        int ok = run(tar, -1) == 0 && run(send, -1) == 0;
        say("HACKBACK-RESULTS %s", ok ? "sent" : "failed");
        return;
    }
    int pipefd[2];
    if (pipe(pipefd) < 0)
        return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    char *argv[] = {"/bin/tar", "-c", "-C", (char *)RESULTS_DIR, "-f", "-", ".", NULL};
    pid_t pid;
    int err = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    struct writer w = {0};
    static char buf[CHUNK];
    ssize_t n;
    int ok = !err;
    while (ok && (n = read(pipefd[0], buf, sizeof(buf))) > 0)
        ok = to_host(buf, (size_t)n, &w) == 0;
    close(pipefd[0]);
    int status = 0;
    while (!err && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    say("HACKBACK-RESULTS %s bytes=%llu", ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "sent" : "failed",
        (unsigned long long)w.offset);
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

static int after_restore(const char *state);

static int hack_back(const char *state)
{
    if (backend != COMMAND) {
        seed_rng("/etc/hackback/rng-seed");
        warm("/bin/sh");
        warm("/bin/tar");
    }
    report_room();
    say("HACKBACK-READY booted; taking the checkpoint");
    m5_simple("checkpoint", M5OP_CHECKPOINT);
    /* ---- a restore resumes here ---- */
    return after_restore(state);
}

/* `hackback-checkpoint`, called by a restored script at its region of interest:
 * a child checkpoint here; a restore of it resumes right after and runs the
 * script it is handed, the same way the boot's checkpoint does. */
static int child_checkpoint(const char *state)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/child", state);
    mkdir(state, 0700);
    mkdir(dir, 0700);
    report_room();
    say("HACKBACK-CHILD-CHECKPOINT taking a child checkpoint");
    m5_simple("checkpoint", M5OP_CHECKPOINT);
    /* ---- a restore of the child resumes here ---- */
    return after_restore(dir);
}

static int after_restore(const char *state)
{
    state_dir = state;
    char script[4096];
    snprintf(script, sizeof(script), "%s/script", state);
    say("HACKBACK-RESTORED reading the script (m5 readfile)");
    char copy[4200];
    snprintf(copy, sizeof(copy), "%s/readfile", state);
    if (backend == COMMAND)
        command_readfile(copy);
    struct payload p;
    int has_payload = backend != MARKS && payload_header(&p);
    long size = backend == MARKS ? (fprintf(stderr, "HACKBACK-MARK m5 readfile\n"), 0)
                : has_payload ? readfile_to(script, p.script, p.script + p.script_bytes)
                              : readfile_to(script, 0, 0);
    if (backend == COMMAND)
        unlink(copy);
    if (size <= 0) {
        if (size == 0)
            say("HACKBACK: m5 readfile gave an empty script: nothing to run, ending the simulation");
        say("HACKBACK-SCRIPT-EXIT %s", size == 0 ? "empty" : "unreadable");
        m5_simple("exit", M5OP_EXIT);
        return 0;
    }
    mkdir(PAYLOAD_DIR, 0755);
    mkdir(RESULTS_DIR, 0755);
    if (has_payload) {
        if (backend == COMMAND)
            command_readfile(copy);
        /* A stream cut short inside the script would run a cut script. */
        int bad = size != (long)p.script_bytes || unpack_payload(&p) < 0;
        if (backend == COMMAND)
            unlink(copy);
        if (bad) {
            say("HACKBACK: the payload was cut short or could not be unpacked into %s", PAYLOAD_DIR);
            say("HACKBACK-SCRIPT-EXIT payload");
            m5_simple("exit", M5OP_EXIT);
            return 0;
        }
        say("HACKBACK-PAYLOAD unpacked into %s", PAYLOAD_DIR);
    }
    if (chdir(PAYLOAD_DIR) < 0)
        fprintf(stderr, "hackback-guest: cannot enter %s: %s\n", PAYLOAD_DIR, strerror(errno));
    char line[4096];
    char *argv[64];
    /* /run is noexec: run the script through its interpreter, as the kernel would. */
    int status = run(interpreter(script, line, sizeof(line), argv, 64), -1);
    say("HACKBACK-SCRIPT-EXIT %d", status);
    send_results();
    m5_simple("exit", M5OP_EXIT);
    return 0;
}

int main(int argc, char **argv)
{
    const char *self = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    int child = strcmp(self, "hackback-checkpoint") == 0 || (argc >= 2 && strcmp(argv[1], "checkpoint") == 0);
    const char *state = getenv("HACKBACK_STATE") ? getenv("HACKBACK_STATE") : "/run/hackback";
    if (!child && (argc != 3 || strcmp(argv[1], "hack-back") != 0)) {
        fprintf(stderr, "usage: hackback-guest hack-back STATE_DIR | hackback-checkpoint (from a restored script)\n");
        return 2;
    }
    m5_command = getenv("HACKBACK_M5");
    if (getenv("HACKBACK_PAYLOAD_DIR"))
        PAYLOAD_DIR = getenv("HACKBACK_PAYLOAD_DIR");
    if (getenv("HACKBACK_RESULTS_DIR"))
        RESULTS_DIR = getenv("HACKBACK_RESULTS_DIR");
    char param[64];
    m5_param(param, sizeof(param));
    if (strcmp(param, "off") == 0)
        backend = MARKS;
    else if (strcmp(param, "command") == 0 || (m5_command && *m5_command)) {
        /* hackback.m5=command: the image's m5 utility (a test double under QEMU) makes each call. */
        if (!(m5_command && *m5_command))
            m5_command = "/sbin/m5";
        backend = COMMAND;
    }
    else if (map_m5() < 0)
        return 1;
    else
        backend = MMIO;
    return child ? child_checkpoint(state) : hack_back(argv[2]);
}
