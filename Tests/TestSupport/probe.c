/*
 * probe: the tiny static helper that Berth's tests run inside containers.
 *
 * It exists so that a test can ask "what does the process see?" and "what is it allowed to do?"
 * without depending on what a busybox applet happens to print. TestRootfs compiles it with
 * `cc -static -O2` and installs it as /bin/probe.
 *
 * Output format (parsed by TestSupport's ProbeOutput):
 *   - data lines are `key=value` (e.g. `pid=1`, `CapEff=0000000000000000`, `forks=12`);
 *   - an action ends with one result line: `ok`, or `errno=NAME (N)` (e.g. `errno=EPERM (1)`);
 *   - the plumbing commands (echo, env, cat, write-stdout-stderr) print raw data only.
 * Exit status: 0 success, 1 the action failed, 2 usage error or refused.
 *
 * stdout is line-buffered so a test reading a running container sees each line at once.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FORKBOMB_MAX 4096 /* forkbomb never forks more than this, whatever it is asked */

extern char **environ;

static const char *errno_name(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case ENOEXEC: return "ENOEXEC";
    case EBADF: return "EBADF";
    case ECHILD: return "ECHILD";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case ESPIPE: return "ESPIPE";
    case EROFS: return "EROFS";
    case EMLINK: return "EMLINK";
    case EPIPE: return "EPIPE";
    case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ELOOP: return "ELOOP";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EDQUOT: return "EDQUOT";
    default: return "E?";
    }
}

/* Prints the result line of an action and returns the exit status for it. */
static int result(int rc)
{
    if (rc == 0) {
        puts("ok");
        return 0;
    }
    int e = errno;
    printf("errno=%s (%d)\n", errno_name(e), e);
    return 1;
}

static int usage(const char *msg)
{
    fprintf(stderr, "probe: %s\n", msg);
    return 2;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int cmd_ids(void)
{
    uid_t r, e, s;
    gid_t gr, ge, gs;
    gid_t groups[256];
    if (getresuid(&r, &e, &s) < 0 || getresgid(&gr, &ge, &gs) < 0)
        return result(-1);
    printf("uid=%u\neuid=%u\nsuid=%u\ngid=%u\negid=%u\nsgid=%u\n", r, e, s, gr, ge, gs);
    int n = getgroups(256, groups);
    if (n < 0)
        return result(-1);
    fputs("groups=", stdout);
    for (int i = 0; i < n; i++)
        printf(i ? ",%u" : "%u", groups[i]);
    putchar('\n');
    return 0;
}

static int cmd_status(void)
{
    static const char *const keys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                       "NoNewPrivs", "Seccomp"};
    printf("pid=%d\nppid=%d\n", getpid(), getppid());
    if (cmd_ids() != 0)
        return 1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return result(-1);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            if (strcmp(line, keys[i]) == 0) {
                char *v = colon + 1;
                v += strspn(v, " \t");
                printf("%s=%s", line, v); /* v keeps its newline */
            }
        }
    }
    fclose(f);
    return 0;
}

/* reboot(2) must never reach the host: only run it as a PID namespace's init or when the caller
 * says it is inside a container, and never in the initial PID namespace (whose /proc/self/ns/pid
 * inode is the fixed PROC_PID_INIT_INO, 0xEFFFFFFC). */
static int cmd_reboot(void)
{
    const char *env = getenv("BERTH_PROBE_IN_CONTAINER");
    if (getpid() != 1 && !(env && strcmp(env, "1") == 0))
        return usage("reboot refused: not pid 1 and BERTH_PROBE_IN_CONTAINER is not 1");
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) == 0 && st.st_ino == 0xEFFFFFFCu)
        return usage("reboot refused: this is the initial PID namespace");
    return result(reboot(RB_POWER_OFF));
}

static int cmd_init_module(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        long rc = syscall(SYS_finit_module, fd, "", 0);
        int e = errno;
        close(fd);
        errno = e;
        return result(rc == 0 ? 0 : -1);
    }
    static char empty[1];
    return result(syscall(SYS_init_module, empty, (unsigned long)0, "") == 0 ? 0 : -1);
}

static int cmd_write(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return result(-1);
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    int e = errno;
    if (close(fd) < 0 && n >= 0)
        return result(-1);
    errno = e;
    if (n >= 0 && (size_t)n != len)
        errno = EIO;
    return result(n >= 0 && (size_t)n == len ? 0 : -1);
}

static int cmd_read(const char *path)
{
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return result(-1);
    ssize_t n = read(fd, buf, sizeof buf);
    int e = errno;
    close(fd);
    errno = e;
    if (n < 0)
        return result(-1);
    printf("bytes=%zd\n", n);
    return result(0);
}

static int cmd_ptrace(const char *arg)
{
    long pid;
    if (parse_long(arg, 1, INT_MAX, &pid) < 0)
        return usage("ptrace: bad pid");
    if (ptrace(PTRACE_ATTACH, (pid_t)pid, 0, 0) < 0)
        return result(-1);
    /* Attached: wait for the stop, then let go so the target carries on. */
    int st;
    waitpid((pid_t)pid, &st, __WALL);
    ptrace(PTRACE_DETACH, (pid_t)pid, 0, 0);
    return result(0);
}

static int cmd_mknod(const char *path, mode_t type, int argc, char **argv, long maj, long min)
{
    if (argc >= 2 && (parse_long(argv[0], 0, 4095, &maj) < 0 || parse_long(argv[1], 0, 1048575, &min) < 0))
        return usage("mknod: bad major/minor");
    return result(mknod(path, type | 0600, makedev((unsigned)maj, (unsigned)min)));
}

static int cmd_alloc(const char *arg)
{
    long mib;
    if (parse_long(arg, 0, 1L << 20, &mib) < 0)
        return usage("alloc: bad MiB");
    size_t size = (size_t)mib << 20;
    long page = sysconf(_SC_PAGESIZE);
    volatile char *p = malloc(size ? size : 1);
    if (!p)
        return result(-1);
    for (size_t i = 0; i < size; i += (size_t)page)
        p[i] = (char)i;
    printf("allocated=%ld\n", mib);
    return result(0);
}

static int cmd_forkbomb(const char *arg)
{
    long n;
    if (parse_long(arg, 0, FORKBOMB_MAX, &n) < 0)
        return usage("forkbomb: N must be 0..4096");
    pid_t kids[FORKBOMB_MAX];
    long forked = 0;
    int first_errno = 0;
    pid_t self = getpid();
    fflush(NULL);
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            /* The children only wait to be killed; they die with the parent and after 60 s
             * anyway, so a killed probe cannot leave a swarm behind. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != self)
                _exit(0);
            alarm(60);
            for (;;)
                pause();
        }
        if (pid < 0) {
            first_errno = errno;
            break;
        }
        kids[forked++] = pid;
    }
    for (long i = 0; i < forked; i++)
        kill(kids[i], SIGKILL);
    for (long i = 0; i < forked; i++)
        while (waitpid(kids[i], NULL, 0) < 0 && errno == EINTR)
            ;
    printf("forks=%ld\n", forked);
    errno = first_errno;
    return result(first_errno ? -1 : 0);
}

static int cmd_sleep(const char *arg)
{
    char *end;
    double secs = strtod(arg, &end);
    if (end == arg || *end != '\0' || !(secs >= 0 && secs <= 86400))
        return usage("sleep: bad seconds");
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return result(0);
}

static int cmd_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return result(-1);
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.' || atoi(ent->d_name) == dirfd(d))
            continue;
        char path[300], target[PATH_MAX];
        snprintf(path, sizeof path, "/proc/self/fd/%s", ent->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = '\0';
        printf("fd=%s %s\n", ent->d_name, target);
    }
    closedir(d);
    return 0;
}

static int cmd_ifaces(void)
{
    DIR *d = opendir("/sys/class/net");
    if (!d)
        return result(-1);
    struct dirent *ent;
    while ((ent = readdir(d)))
        if (ent->d_name[0] != '.')
            printf("iface=%s\n", ent->d_name);
    closedir(d);
    return 0;
}

static int cmd_signal(const char *arg)
{
    static const struct { const char *name; int sig; } names[] = {
        {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ABRT", SIGABRT}, {"KILL", SIGKILL},
        {"USR1", SIGUSR1}, {"SEGV", SIGSEGV}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}};
    long sig = 0;
    const char *name = strncmp(arg, "SIG", 3) == 0 ? arg + 3 : arg;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0)
            sig = names[i].sig;
    if (sig == 0 && parse_long(arg, 1, 64, &sig) < 0)
        return usage("signal: bad signal");
    fflush(NULL);
    signal((int)sig, SIG_DFL);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    kill(getpid(), (int)sig);
    /* Still here: a PID namespace's init ignores signals it sent itself and has no handler for.
     * A real fault is delivered anyway, so SEGV can still be tested as pid 1. */
    if (sig == SIGSEGV) {
        volatile int *volatile nowhere = NULL;
        *nowhere = 1;
    }
    puts("ignored");
    return 1;
}

static int cmd_cat(const char *path)
{
    int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return result(-1);
    char buf[65536];
    fflush(stdout);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? 1 : 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(1, buf + off, (size_t)(n - off));
            if (w < 0 && errno != EINTR)
                return 1;
            if (w > 0)
                off += w;
        }
    }
}

static int cmd_echo(int n, char **args)
{
    for (int i = 0; i < n; i++)
        printf(i ? " %s" : "%s", args[i]);
    putchar('\n');
    return 0;
}

static int cmd_env(void)
{
    for (char **e = environ; e && *e; e++)
        puts(*e);
    return 0;
}

static int cmd_cwd(void)
{
    char buf[PATH_MAX];
    if (!getcwd(buf, sizeof buf))
        return result(-1);
    printf("cwd=%s\n", buf);
    return 0;
}

static int cmd_hostname(void)
{
    struct utsname u;
    if (uname(&u) < 0)
        return result(-1);
    printf("hostname=%s\n", u.nodename);
    return 0;
}

static int cmd_exit(const char *arg)
{
    long code;
    if (parse_long(arg, 0, 255, &code) < 0)
        return usage("exit: code must be 0..255");
    return (int)code;
}

static int cmd_write_stdout_stderr(void)
{
    fflush(stdout);
    return write(1, "out\n", 4) == 4 && write(2, "err\n", 4) == 4 ? 0 : 1;
}

/* ---- escape attempts against the runtime's own processes (EscapeTests) ---- */

/* For SECS seconds, polls /proc for processes other than itself and tries to open each one's
 * /proc/<pid>/exe, as the CVE-2019-5736 exploit does with an exec'd runtime child. An exe it
 * can open that is neither itself nor one of ALLOWED... (the container's own programs) nor
 * Berth's sealed exec trampoline (a memfd it must not be able to write: `writableexe=<pid>`
 * otherwise) is the host's: printed as `hostexe=<pid>`. Prints `seen=<number of processes
 * observed>` at the end. */
static int cmd_watch_host(int n, char **a)
{
    double secs = atof(a[0]);
    struct stat allowed[16];
    int nallowed = 0, seen = 0, escaped = 0;
    struct timespec start, now;
    pid_t self = getpid();
    if (stat("/proc/self/exe", &allowed[nallowed]) == 0)
        nallowed++;
    for (int i = 1; i < n && nallowed < 16; i++)
        if (stat(a[i], &allowed[nallowed]) == 0)
            nallowed++;
    clock_gettime(CLOCK_MONOTONIC, &start);
    puts("watching");
    do {
        DIR *d = opendir("/proc");
        struct dirent *e;
        if (!d)
            return result(-1);
        while ((e = readdir(d)) != NULL) {
            char path[64];
            struct stat st;
            long pid = strtol(e->d_name, NULL, 10);
            int fd, known = 0;
            if (pid <= 1 || pid == self)
                continue;
            seen++;
            snprintf(path, sizeof path, "/proc/%ld/exe", pid);
            fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            if (fstat(fd, &st) == 0)
                for (int i = 0; i < nallowed; i++)
                    known |= st.st_dev == allowed[i].st_dev && st.st_ino == allowed[i].st_ino;
            if (!known) {
                char target[256], self_fd[64];
                ssize_t len;
                /* What was opened, whatever the process has become since. */
                snprintf(self_fd, sizeof self_fd, "/proc/self/fd/%d", fd);
                len = readlink(self_fd, target, sizeof target - 1);
                target[len > 0 ? len : 0] = '\0';
                if (strncmp(target, "/memfd:berth-supervisor", 23) == 0) {
                    /* Sealed: opening for writing may work, writing must not. */
                    int w = open(self_fd, O_WRONLY | O_CLOEXEC);
                    if (w >= 0 && pwrite(w, "\177", 1, 0) == 1) {
                        printf("writableexe=%ld\n", pid);
                        escaped++;
                    }
                    if (w >= 0)
                        close(w);
                } else {
                    printf("hostexe=%ld %s\n", pid, target);
                    escaped++;
                }
            }
            close(fd);
        }
        closedir(d);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < secs && escaped == 0);
    printf("seen=%d\n", seen);
    return 0;
}

/* Adapters so every command has the same shape in the table below. */
/* enosys NR[,NR...] PROGRAM [ARGS...]: runs PROGRAM (a host path) with those system calls
 * answering ENOSYS, as an older kernel, or a seccomp filter around the process (Docker's
 * default profile does it to clone3), would. */
static int cmd_enosys(int n, char **a)
{
    struct sock_filter filter[2 + 2 * 16];
    struct sock_fprog program;
    unsigned short count = 0;
    char *numbers = a[0], *next;

    (void)n;
    filter[count++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (next = strtok(numbers, ","); next != NULL && count < 2 + 2 * 15; next = strtok(NULL, ",")) {
        long nr;
        if (parse_long(next, 0, 4096, &nr) < 0)
            return usage("enosys: system call numbers, comma separated");
        filter[count++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1);
        filter[count++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
    }
    filter[count++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    program.len = count;
    program.filter = filter;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) < 0)
        return result(-1);
    execv(a[1], a + 1);
    return result(-1);
}

static int do_status(int n, char **a) { (void)n; (void)a; return cmd_status(); }
static int do_ids(int n, char **a) { (void)n; (void)a; return cmd_ids(); }
static int do_mount_tmpfs(int n, char **a) { (void)n; return result(mount("tmpfs", a[0], "tmpfs", 0, "size=1m")); }
static int do_umount(int n, char **a) { (void)n; return result(umount2(a[0], 0)); }
static int do_unshare_user(int n, char **a) { (void)n; (void)a; return result(unshare(CLONE_NEWUSER)); }
static int do_reboot(int n, char **a) { (void)n; (void)a; return cmd_reboot(); }
static int do_init_module(int n, char **a) { (void)n; (void)a; return cmd_init_module(); }
static int do_write(int n, char **a) { (void)n; return cmd_write(a[0], a[1]); }
static int do_read(int n, char **a) { (void)n; return cmd_read(a[0]); }
static int do_ptrace(int n, char **a) { (void)n; return cmd_ptrace(a[0]); }
static int do_mknod_block(int n, char **a) { return cmd_mknod(a[0], S_IFBLK, n - 1, a + 1, 8, 0); }
static int do_mknod_char(int n, char **a) { return cmd_mknod(a[0], S_IFCHR, n - 1, a + 1, 1, 3); }
static int do_alloc(int n, char **a) { (void)n; return cmd_alloc(a[0]); }
static int do_forkbomb(int n, char **a) { (void)n; return cmd_forkbomb(a[0]); }
static int do_sleep(int n, char **a) { (void)n; return cmd_sleep(a[0]); }
static int do_fds(int n, char **a) { (void)n; (void)a; return cmd_fds(); }
static int do_ifaces(int n, char **a) { (void)n; (void)a; return cmd_ifaces(); }
static int do_signal(int n, char **a) { (void)n; return cmd_signal(a[0]); }
static int do_cat(int n, char **a) { (void)n; return cmd_cat(a[0]); }
static int do_env(int n, char **a) { (void)n; (void)a; return cmd_env(); }
static int do_cwd(int n, char **a) { (void)n; (void)a; return cmd_cwd(); }
static int do_hostname(int n, char **a) { (void)n; (void)a; return cmd_hostname(); }
static int do_exit(int n, char **a) { (void)n; return cmd_exit(a[0]); }
static int do_write_stdout_stderr(int n, char **a) { (void)n; (void)a; return cmd_write_stdout_stderr(); }

static const struct {
    const char *name;
    int nargs; /* minimum */
    int (*run)(int n, char **args);
} commands[] = {
    {"status", 0, do_status},
    {"ids", 0, do_ids},
    {"mount-tmpfs", 1, do_mount_tmpfs},      /* DIR */
    {"umount", 1, do_umount},                /* PATH */
    {"unshare-user", 0, do_unshare_user},
    {"reboot", 0, do_reboot},
    {"init-module", 0, do_init_module},
    {"write", 2, do_write},                  /* PATH VALUE */
    {"read", 1, do_read},                    /* PATH */
    {"ptrace", 1, do_ptrace},                /* PID */
    {"mknod-block", 1, do_mknod_block},      /* PATH [MAJOR MINOR], default 8 0 (sda) */
    {"mknod-char", 1, do_mknod_char},        /* PATH [MAJOR MINOR], default 1 3 (null) */
    {"alloc", 1, do_alloc},                  /* MIB */
    {"forkbomb", 1, do_forkbomb},            /* N, at most FORKBOMB_MAX */
    {"sleep", 1, do_sleep},                  /* SECS, fractions allowed */
    {"fds", 0, do_fds},
    {"ifaces", 0, do_ifaces},
    {"signal", 1, do_signal},                /* SIG: number, TERM or SIGTERM */
    {"cat", 1, do_cat},                      /* PATH, or - for stdin */
    {"echo", 0, cmd_echo},                   /* ARGS... */
    {"env", 0, do_env},
    {"cwd", 0, do_cwd},
    {"hostname", 0, do_hostname},
    {"exit", 1, do_exit},                    /* N */
    {"write-stdout-stderr", 0, do_write_stdout_stderr},
    /* escape attempts (EscapeTests) */
    {"watch-host", 1, cmd_watch_host},       /* SECS [ALLOWED-EXE...] */
    /* what older kernels lack (KernelFeatureTests) */
    {"enosys", 2, cmd_enosys},               /* NR[,NR...] PROGRAM [ARGS...] */
};

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        return usage("usage: probe COMMAND [ARGS...] (see probe.c)");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (argc - 2 < commands[i].nargs)
            return usage("missing argument");
        return commands[i].run(argc - 2, argv + 2);
    }
    return usage("unknown command (see probe.c)");
}
