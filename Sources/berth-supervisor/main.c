/*
 * berth-supervisor: holds a detached container's process after the program that started it
 * has gone.
 *
 * Why a separate C program: a detached container must outlive the Swift process that spawned
 * it, and something must stay its parent to reap it and record how it ended. A fork of the
 * Swift host would keep the host's whole address space alive (tens of MiB per container);
 * this program keeps a few hundred KiB. The shim (ck_spawn.c, supervised spawns) forks, clones
 * the container's process as the fork's child, and execs this program, so the process is our
 * child from the start.
 *
 * What it does, and nothing more:
 *   - reads the process's stdout and stderr (descriptors given with --output) into a log of
 *     JSON lines in Docker's json-file format ({"log":…,"stream":…,"time":…}, encoded by
 *     CSyscalls' ck_log_entry.h), rotated at --log-max-size into --log-max-files files by
 *     the same header's ck_log_rotate, exactly as the Containers target's LogFile, with an
 *     entry saying how much output a rotation dropped;
 *   - reaps the process and, once its output has ended, writes "<si_code> <si_status>\n"
 *     (waitid's CLD_* code and status) to --status, atomically, then exits.
 * Whoever holds a pidfd of this process knows the container's run has ended when it exits.
 *
 * Usage: berth-supervisor --status PATH --log PATH --log-max-size BYTES --log-max-files N
 *                         [--output stdout:FD] [--output stderr:FD]
 *
 * The same program is a container's init process (`--init`, as Docker's tini): bind-mounted at
 * /dev/init and run as pid 1 with `--init -- COMMAND [ARG...]`, it runs the command as its
 * child, passes on every signal it gets, reaps every orphan the pid namespace hands it, and
 * exits with the command's status. Being static, it needs nothing from the image.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../CSyscalls/include/ck_log_entry.h"

extern char **environ;

#define MAX_OUTPUTS 2
#define CHUNK 65536

struct output {
    int fd;
    const char *stream;
};

static const char *log_path;
static long long log_max_size = 10 << 20;
static int log_max_files = 3;
static int log_fd = -1;
static long long log_size;

static void usage(void)
{
    fprintf(stderr, "usage: berth-supervisor --status PATH --log PATH --log-max-size BYTES "
                    "--log-max-files N [--output stdout:FD] [--output stderr:FD]\n");
    exit(2);
}

/* One JSON-lines entry per line (a trailing partial line is an entry of its own), encoded by
 * the header LogFile uses too, so that attached and detached logs agree byte for byte. */
static void append(const unsigned char *bytes, size_t count, const char *stream)
{
    static char entry[CHUNK * 6 + 96];
    struct timespec now;
    size_t start = 0;

    clock_gettime(CLOCK_REALTIME, &now);
    while (start < count) {
        size_t used = 0, done = 0;
        size_t length = ck_log_entry(entry, bytes + start, count - start, &used, stream, &now);
        if (log_fd < 0 || log_size + (long long)length > log_max_size)
            ck_log_rotate(log_path, log_max_files, &log_fd, &log_size, &now);
        if (log_fd >= 0) {
            while (done < length) {
                ssize_t w = write(log_fd, entry + done, length - done);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    break;
                done += (size_t)w;
            }
            log_size += (long long)length;
        }
        start += used;
    }
}

/* Writes the status file atomically: readers see the whole line or no file. */
static void record(const char *path, int code, int status)
{
    char tmp[4096], line[64];
    int fd, n;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return;
    n = snprintf(line, sizeof(line), "%d %d\n", code, status);
    if (write(fd, line, (size_t)n) == n && fsync(fd) == 0) {
        close(fd);
        rename(tmp, path);
        return;
    }
    close(fd);
    unlink(tmp);
}

/* pid 1 of a container: the command as a child, signals passed on, orphans reaped. */
static int run_init(char **command)
{
    sigset_t all;
    pid_t child;
    int sig;

    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    child = fork();
    if (child < 0) {
        perror("berth-init: fork");
        return 125;
    }
    if (child == 0) {
        sigset_t none;
        /* Its own process group, so a terminal's signals reach it as they would without us. */
        setpgid(0, 0);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(command[0], command);
        fprintf(stderr, "berth-init: exec %s: %s\n", command[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    for (;;) {
        siginfo_t info;
        sig = sigwaitinfo(&all, &info);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            kill(child, sig);
            continue;
        }
        for (;;) {
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0)
                break;
            if (pid == child)
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
    }
}

int main(int argc, char **argv)
{
    static unsigned char buffer[CHUNK];
    struct output outputs[MAX_OUTPUTS];
    struct pollfd fds[MAX_OUTPUTS + 1];
    const char *status_path = NULL;
    int output_count = 0, open_outputs, signal_fd, reaped = 0, code = 0, status = 0, i;
    sigset_t chld;

    /* The exec trampoline: Berth's child runs us from a sealed memfd as the last step and we
     * run the container's program, so that /proc/self/exe names this sealed copy, never the
     * embedding program, while the kernel resolves the program (a "#!/proc/self/exe" script
     * would otherwise load the host's binary into the container: CVE-2019-5736). Nothing but
     * execve: the container's seccomp filter and credentials are already in force. */
    if (argc > 3 && strcmp(argv[1], "--exec") == 0) {
        /* Like the child that exec'd us: not openable through /proc until the program runs. */
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        execve(argv[2], argv + 3, environ);
        fprintf(stderr, "berth: exec \"%s\": %s\n", argv[2], strerror(errno));
        return errno == ENOENT ? 127 : 126;
    }
    if (argc > 3 && strcmp(argv[1], "--init") == 0 && strcmp(argv[2], "--") == 0)
        return run_init(argv + 3);
    /* A host program with the container's output pipes: nothing may read its memory or fds
     * (execve made it dumpable again; the fork it was exec'd from was not). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* Run from a memfd, the kernel named us after the descriptor: ps shows our own name. */
    prctl(PR_SET_NAME, "berth-supervisor", 0, 0, 0);
    for (i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--status") == 0) {
            status_path = argv[++i];
        } else if (strcmp(argv[i], "--log") == 0) {
            log_path = argv[++i];
        } else if (strcmp(argv[i], "--log-max-size") == 0) {
            log_max_size = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--log-max-files") == 0) {
            log_max_files = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--output") == 0 && output_count < MAX_OUTPUTS) {
            const char *value = argv[++i];
            if (strncmp(value, "stdout:", 7) == 0)
                outputs[output_count].stream = "stdout";
            else if (strncmp(value, "stderr:", 7) == 0)
                outputs[output_count].stream = "stderr";
            else
                usage();
            outputs[output_count].fd = atoi(value + 7);
            output_count++;
        } else {
            usage();
        }
    }
    if (status_path == NULL || log_path == NULL || log_max_size <= 0 || log_max_files <= 0)
        usage();

    /* Terminal and pipe signals are not ours (we have no terminal); SIGTERM ends us, and the
     * container with us through its parent-death signal. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    signal_fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0)
        return 1;

    open_outputs = output_count;
    for (;;) {
        int n = 0;
        siginfo_t info;

        /* The child may have exited before SIGCHLD was blocked (its signal then was discarded):
         * look every time round, not only when the signalfd says so. */
        while (!reaped) {
            memset(&info, 0, sizeof(info));
            if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG) < 0) {
                if (errno == EINTR)
                    continue;
                reaped = 1; /* ECHILD: nothing left to wait for */
                code = CLD_KILLED;
                status = SIGKILL;
                break;
            }
            if (info.si_pid == 0)
                break;
            reaped = 1;
            code = info.si_code;
            status = info.si_status;
        }
        if (reaped && open_outputs == 0)
            break;

        for (i = 0; i < output_count; i++) {
            fds[n].fd = outputs[i].fd;
            fds[n].events = POLLIN;
            n++;
        }
        fds[n].fd = signal_fd;
        fds[n].events = POLLIN;
        if (poll(fds, (nfds_t)n + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        for (i = 0; i < output_count; i++) {
            ssize_t got;
            if (outputs[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            got = read(outputs[i].fd, buffer, sizeof(buffer));
            if (got > 0) {
                append(buffer, (size_t)got, outputs[i].stream);
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(outputs[i].fd);
                outputs[i].fd = -1; /* poll ignores negative descriptors */
                open_outputs--;
            }
        }
        if (fds[n].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                ;
        }
    }
    record(status_path, code, status);
    return 0;
}
