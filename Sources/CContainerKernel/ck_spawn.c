/*
 * The parent half of the spawn protocol (see ck_spawn.h): clone with a pidfd, the handshake,
 * and the second clone needed to enter an existing pid namespace. Runs on the host's spawner
 * thread; the child half is in ck_child.c.
 */
#define _GNU_SOURCE
#include "ck_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD /* Linux 5.2 */
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD /* Linux 5.4 */
#define P_PIDFD 3
#endif

const char *ck_ns_name(int type)
{
    switch (type) {
    case CLONE_NEWUSER: return "user namespace";
    case CLONE_NEWNS: return "mount namespace";
    case CLONE_NEWPID: return "pid namespace";
    case CLONE_NEWNET: return "network namespace";
    case CLONE_NEWUTS: return "uts namespace";
    case CLONE_NEWIPC: return "ipc namespace";
    case CLONE_NEWCGROUP: return "cgroup namespace";
    default: return "namespace";
    }
}

static int fail(struct ck_failure *f, int stage, int err, const char *detail)
{
    f->stage = stage;
    f->error = err;
    f->detail[0] = '\0';
    ck_strlcat(f->detail, detail, sizeof(f->detail));
    return -1;
}

static long clone3_raw(uint64_t flags, int *pidfd)
{
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags;
    /* clone3 refuses an exit signal with CLONE_PARENT: the child inherits its parent's. */
    args.exit_signal = (flags & CLONE_PARENT) ? 0 : SIGCHLD;
    if (pidfd != NULL) {
        args.flags |= CLONE_PIDFD;
        args.pidfd = (uint64_t)(uintptr_t)pidfd;
    }
    return syscall(SYS_clone3, &args, sizeof(args));
}

static ssize_t recv_msg(int sock, struct ck_msg *msg, int *fd_out)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {msg, sizeof(*msg)};
    struct msghdr mh;
    struct cmsghdr *cm;
    ssize_t n;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof(cbuf);
    do {
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (fd_out != NULL)
        *fd_out = -1;
    for (cm = CMSG_FIRSTHDR(&mh); n > 0 && cm != NULL; cm = CMSG_NXTHDR(&mh, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm), sizeof(int));
            if (fd_out != NULL)
                *fd_out = fd;
            else
                close(fd);
        }
    return n;
}

/* The intermediate for joining a pid namespace: setns only affects children, so it joins
 * everything and clones the real child with CLONE_PARENT, which makes that child ours (the
 * host process's) — waitable through a pidfd, with its parent-death signal tied to our thread. */
__attribute__((noreturn)) static void intermediate(const struct ck_spawn_config *cfg, int sock)
{
    struct ck_msg msg;
    uint32_t i;
    long pid;

    for (i = 0; i < cfg->join_count; i++)
        if (setns(cfg->join[i].fd, cfg->join[i].type) < 0)
            ck_die(sock, CK_STAGE_SETNS, errno, "setns", ck_ns_name(cfg->join[i].type));
    if (setns(cfg->join_pid_fd, CLONE_NEWPID) < 0)
        ck_die(sock, CK_STAGE_SETNS, errno, "setns", "pid namespace");
    pid = clone3_raw(cfg->clone_flags | CLONE_PARENT, NULL);
    if (pid < 0)
        ck_die(sock, CK_STAGE_CLONE, errno, "clone3", NULL);
    if (pid == 0)
        ck_child(cfg, sock, 1);
    memset(&msg, 0, sizeof(msg));
    msg.type = CK_MSG_PID;
    msg.pid = (int32_t)pid;
    if (send(sock, &msg, sizeof(msg), MSG_NOSIGNAL) < 0)
        _exit(CK_EXIT_INIT_FAILED);
    _exit(0);
}

/* The child of the direct path shares our address space (CLONE_VM, as posix_spawn does):
 * copying the page tables of a large Swift process at clone, and tearing the copy down again
 * at execve, cost more than all the namespaces together. It runs on a stack of its own and
 * touches no memory but that stack and the config, which the caller keeps alive until
 * ck_spawn_continue returns. One stack suffices: spawns are serialised on the spawner thread
 * and the child leaves the stack (execve or _exit) before ck_spawn_continue returns. */
#define CK_CHILD_STACK_SIZE (256 * 1024)

static struct {
    const struct ck_spawn_config *cfg;
    int sock;
    int unused_end;
} child_start;

static int child_entry(void *arg)
{
    (void)arg;
    if (child_start.unused_end >= 0)
        close(child_start.unused_end);
    ck_child(child_start.cfg, child_start.sock, 0);
}

static char *child_stack_top(void)
{
    static char *top;
    if (top == NULL) {
        /* A guard page below the stack turns an overflow into a crash, not corruption. */
        char *base = mmap(NULL, CK_CHILD_STACK_SIZE + 4096, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (base == MAP_FAILED)
            return NULL;
        if (mprotect(base, 4096, PROT_NONE) < 0) {
            munmap(base, CK_CHILD_STACK_SIZE + 4096);
            return NULL;
        }
        top = base + CK_CHILD_STACK_SIZE + 4096;
    }
    return top;
}

/* The clone of the direct path; in the supervisor the supervisor is the parent. */
static long clone_child(const struct ck_spawn_config *cfg, int sock, int unused_end, int *pidfd)
{
    char *stack = child_stack_top();
    if (stack == NULL) {
        errno = ENOMEM;
        return -1;
    }
    child_start.cfg = cfg;
    child_start.sock = sock;
    child_start.unused_end = unused_end;
    return clone(child_entry, stack, CLONE_VM | (pidfd != NULL ? CLONE_PIDFD : 0) | (int)cfg->clone_flags | SIGCHLD,
                 NULL, pidfd);
}

/* A supervised spawn's intermediate, a fork of the caller (its own copy of the address space,
 * so it survives the caller). Like the child it runs only async-signal-safe code: the caller's
 * other threads may have held locks at the fork. It clones the child as its own, reports the
 * child's pid, and becomes the supervisor program, which then reaps the child. The child shares
 * this process's copy of the address space until its own execve; our execve leaves that copy
 * to the child alone. */
__attribute__((noreturn)) static void supervisor(const struct ck_spawn_config *cfg, int sock)
{
    static const char *const empty_env[] = {NULL};
    struct ck_msg msg;
    int moved[CK_MAX_SUPERVISOR_FDS];
    int devnull, status;
    uint32_t i;
    long pid;
    sigset_t none;

    /* A session of its own: the caller's terminal and job control must not reach it. */
    if (setsid() < 0)
        ck_die(sock, CK_STAGE_SUPERVISOR, errno, "setsid", NULL);
    pid = clone_child(cfg, sock, -1, NULL);
    if (pid < 0)
        ck_die(sock, CK_STAGE_CLONE, errno, "clone", NULL);
    memset(&msg, 0, sizeof(msg));
    msg.type = CK_MSG_PID;
    msg.pid = (int32_t)pid;
    if (send(sock, &msg, sizeof(msg), MSG_NOSIGNAL) < 0)
        goto failed;

    /* The supervisor's descriptors become 3, 4, ...: first out of the way (a source may already
     * be one of those numbers), then into place; dup2 clears close-on-exec on the result. */
    for (i = 0; i < cfg->supervisor_fd_count; i++)
        if ((moved[i] = fcntl(cfg->supervisor_fds[i], F_DUPFD_CLOEXEC, 3 + CK_MAX_SUPERVISOR_FDS)) < 0)
            goto failed;
    for (i = 0; i < cfg->supervisor_fd_count; i++)
        if (dup2(moved[i], 3 + (int)i) < 0)
            goto failed;
    /* The caller's stdio (a terminal, a pipe someone reads to its end) must not be held open. */
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
        goto failed;
    if (syscall(SYS_close_range, 3 + cfg->supervisor_fd_count, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        goto failed;
    /* Nothing of the caller's signal handling carries over: SIG_IGN would survive execve. */
    ck_reset_signal_dispositions();
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(cfg->supervisor_path, (char *const *)cfg->supervisor_argv, (char *const *)empty_env);

failed:
    /* Report before reaping: the caller reads the failure, the child must not outlive us. */
    status = errno;
    kill((pid_t)pid, SIGKILL);
    while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR)
        ;
    ck_die(sock, CK_STAGE_SUPERVISOR, status, "start supervisor", cfg->supervisor_path);
}

/* Receives the grandchild's pid from an intermediate or a supervisor and opens a pidfd for it.
 * The grandchild blocks on the socket until CONTINUE, so its pid cannot be reused before. */
static int receive_pid(int sock, pid_t *pid, int *pidfd, struct ck_failure *failure)
{
    struct ck_msg msg;
    ssize_t n = recv_msg(sock, &msg, NULL);
    if (n != (ssize_t)sizeof(msg) || msg.type != CK_MSG_PID) {
        if (n == (ssize_t)sizeof(msg) && msg.type == CK_MSG_FAILURE)
            return fail(failure, msg.stage, msg.error, msg.detail);
        return fail(failure, CK_STAGE_HANDSHAKE, EPROTO, "intermediate process exited without a pid");
    }
    *pid = msg.pid;
    *pidfd = (int)syscall(SYS_pidfd_open, *pid, 0);
    if (*pidfd < 0) {
        int err = errno;
        kill(*pid, SIGKILL);
        return fail(failure, CK_STAGE_CLONE, err, "pidfd_open");
    }
    return 0;
}

int ck_spawn(const struct ck_spawn_config *cfg, struct ck_spawn_result *out, struct ck_failure *failure)
{
    sigset_t all, saved;
    int sp[2], pidfd = -1, supervisor_pidfd = -1, err;
    long pid;
    pid_t first;
    int via_intermediate = cfg->join_pid_fd >= 0;
    int supervised = cfg->supervisor_path != NULL;

    if (cfg->extra_fd_count > CK_MAX_EXTRA_FDS)
        return fail(failure, CK_STAGE_CLONE, EINVAL, "too many extra file descriptors");
    if (supervised && (via_intermediate || cfg->supervisor_fd_count > CK_MAX_SUPERVISOR_FDS))
        return fail(failure, CK_STAGE_SUPERVISOR, EINVAL,
                    via_intermediate ? "a supervised process cannot join a pid namespace" : "too many supervisor fds");
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return fail(failure, CK_STAGE_CLONE, errno, "socketpair");

    /* The child starts with every signal blocked, so no host handler (Swift code) can run in
     * it before it has reset the dispositions. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    if (supervised) {
        pid = clone3_raw(0, &supervisor_pidfd);
        if (pid == 0) {
            close(sp[0]);
            supervisor(cfg, sp[1]);
        }
    } else if (via_intermediate) {
        pid = clone3_raw(0, NULL);
        if (pid == 0) {
            close(sp[0]);
            intermediate(cfg, sp[1]);
        }
    } else {
        pid = clone_child(cfg, sp[1], sp[0], &pidfd);
    }
    err = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close(sp[1]);
    if (pid < 0) {
        close(sp[0]);
        return fail(failure, CK_STAGE_CLONE, err, "clone3");
    }

    first = (pid_t)pid;
    if (via_intermediate || supervised) {
        pid_t intermediate_pid = (pid_t)pid, child;
        int status, rc = receive_pid(sp[0], &child, &pidfd, failure);
        /* The intermediate exits at once; the supervisor lives on, unless it failed. */
        if (via_intermediate || rc < 0) {
            while (waitpid(intermediate_pid, &status, 0) < 0 && errno == EINTR)
                ;
            if (supervisor_pidfd >= 0)
                close(supervisor_pidfd);
            supervisor_pidfd = -1;
        }
        if (rc < 0) {
            close(sp[0]);
            return rc;
        }
        pid = child;
    }
    out->pid = (pid_t)pid;
    out->pidfd = pidfd;
    out->sync_fd = sp[0];
    out->supervisor_pid = supervisor_pidfd >= 0 ? first : 0;
    out->supervisor_pidfd = supervisor_pidfd;
    return 0;
}

int ck_spawn_continue(int sync_fd, int *pty_master, struct ck_failure *failure)
{
    struct ck_msg msg;
    int rc = 0;

    *pty_master = -1;
    memset(&msg, 0, sizeof(msg));
    msg.type = CK_MSG_CONTINUE;
    /* A send error means the child is gone; what it said (if anything) is still readable. */
    (void)send(sync_fd, &msg, sizeof(msg), MSG_NOSIGNAL);
    for (;;) {
        int fd;
        ssize_t n = recv_msg(sync_fd, &msg, &fd);
        if (n == 0)
            break; /* EOF: the child exec'd (the socket was close-on-exec) */
        if (n < 0) {
            rc = fail(failure, CK_STAGE_HANDSHAKE, errno, "read from init");
            break;
        }
        if (n != (ssize_t)sizeof(msg)) {
            rc = fail(failure, CK_STAGE_HANDSHAKE, EPROTO, "short message from init");
            break;
        }
        if (msg.type == CK_MSG_PTY && fd >= 0 && *pty_master < 0) {
            *pty_master = fd;
            continue;
        }
        if (fd >= 0)
            close(fd);
        if (msg.type == CK_MSG_FAILURE)
            rc = fail(failure, msg.stage, msg.error, msg.detail);
        else
            rc = fail(failure, CK_STAGE_HANDSHAKE, EPROTO, "unexpected message from init");
        break;
    }
    close(sync_fd);
    if (rc < 0 && *pty_master >= 0) {
        close(*pty_master);
        *pty_master = -1;
    }
    return rc;
}

int ck_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int ck_pidfd_send_signal(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }

int ck_waitid_pidfd(int pidfd, int options, int *code, int *status)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, options) < 0)
        return -1;
    *code = info.si_code;
    *status = info.si_status;
    return info.si_pid;
}

int ck_set_cloexec_from(int lowfd) { return (int)syscall(SYS_close_range, (unsigned)lowfd, ~0U, 1U << 2); }
