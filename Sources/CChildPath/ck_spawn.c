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
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
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
    f->timed_out = 0;
    f->stage = stage;
    f->error = err;
    f->detail[0] = '\0';
    ck_strlcat(f->detail, detail, sizeof(f->detail));
    return -1;
}

/* The failure a child recorded in the status page (ck_die). */
static int reported(struct ck_failure *f, const struct ck_status *st)
{
    return fail(f, st->stage, st->error, st->detail);
}

/* The namespaces created at clone: the cgroup namespace is created by the child once the
 * parent has placed it in its cgroup (see ck_child). */
static uint64_t clone_namespaces(const struct ck_spawn_config *cfg)
{
    return cfg->clone_flags & ~(uint64_t)CLONE_NEWCGROUP;
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

/* Signals stay blocked on the spawner thread while a child shares its address space, so these
 * calls never fail with EINTR; see "errno" below ck_spawn. */
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
    n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
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

/* ---- dumpability ---- */

/* A child that still runs host code must not be dumpable: otherwise a process in the container
 * it entered (same uid, no CAP_SYS_PTRACE needed) can open its /proc/<pid>/exe, mem, fd and
 * environ. The direct child shares the caller's address space (CLONE_VM), and dumpability
 * belongs to the address space, so the caller's own is made non-dumpable from before the clone
 * until no child shares it; forks inherit the setting, so they are non-dumpable from their
 * first instruction too. A count keeps concurrent spawns from restoring it early, and the
 * caller's setting comes back whatever a child's credential change did to the shared one. */
static pthread_mutex_t dumpable_lock = PTHREAD_MUTEX_INITIALIZER;
static int dumpable_holds;
static int dumpable_saved;

static void hold_non_dumpable(void)
{
    pthread_mutex_lock(&dumpable_lock);
    if (dumpable_holds++ == 0)
        dumpable_saved = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
}

static void release_non_dumpable(void)
{
    pthread_mutex_lock(&dumpable_lock);
    /* PR_SET_DUMPABLE takes 0 or 1 only (2 is suid_dumpable's, set by the kernel). */
    if (--dumpable_holds == 0 && (dumpable_saved == 0 || dumpable_saved == 1))
        prctl(PR_SET_DUMPABLE, dumpable_saved, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
}

/* ---- the processes ---- */

/* Where a new process finds its context: in the status page, which outlives ck_spawn's frame
 * (the direct child runs while ck_spawn has returned). Each process copies it to its own stack
 * first: the supervisor and its child share the page but not descriptor numbers. */
struct ck_page {
    struct ck_status status;
    struct ck_ctx ctx;
};

/* The intermediate for joining a pid namespace: setns only affects children, so it joins
 * everything and clones the real child with CLONE_PARENT, which makes that child ours (the
 * host process's) — waitable through a pidfd, with its parent-death signal tied to our thread. */
__attribute__((noreturn)) static void intermediate(struct ck_page *page)
{
    struct ck_ctx ctx = page->ctx;
    const struct ck_spawn_config *cfg = ctx.cfg;
    struct ck_msg msg;
    uint32_t i;
    long pid;

    if (ck_close_unneeded_fds(&ctx) < 0)
        ck_die(&ctx, CK_STAGE_CLOSE_FDS, errno, "close_range", NULL);
    for (i = 0; i < cfg->join_count; i++)
        if (setns(cfg->join[i].fd, cfg->join[i].type) < 0)
            ck_die(&ctx, CK_STAGE_SETNS, errno, "setns", ck_ns_name(cfg->join[i].type));
    if (setns(cfg->join_pid_fd, CLONE_NEWPID) < 0)
        ck_die(&ctx, CK_STAGE_SETNS, errno, "setns", "pid namespace");
    /* A fork (its own copy of our stack, so of ctx), non-dumpable as we are. */
    pid = clone3_raw(clone_namespaces(cfg) | CLONE_PARENT, NULL);
    if (pid < 0)
        ck_die(&ctx, CK_STAGE_CLONE, errno, "clone3", NULL);
    if (pid == 0) {
        close(cfg->join_pid_fd);
        ck_child(&ctx, 1);
    }
    memset(&msg, 0, sizeof(msg));
    msg.type = CK_MSG_PID;
    msg.pid = (int32_t)pid;
    if (send(ctx.sock, &msg, sizeof(msg), MSG_NOSIGNAL) < 0)
        _exit(CK_EXIT_INIT_FAILED);
    _exit(0);
}

/* The child of the direct path shares our address space (CLONE_VM, as posix_spawn does):
 * copying the page tables of a large Swift process at clone, and tearing the copy down again
 * at execve, cost more than all the namespaces together. It runs on a stack of its own, made
 * for this spawn and freed by ck_spawn_release once the child has left it, and touches no
 * memory but that stack, the status page and the config, which the caller keeps alive until
 * then.
 *
 * errno: without CLONE_SETTLS the child uses the spawner thread's thread-local storage, errno
 * included. The spawner thread therefore makes no call whose errno it reads while the child
 * runs, other than ones that cannot fail with the child's values mattering (poll, recvmsg with
 * every signal blocked); the child reads errno only right after its own calls. */
#define CK_CHILD_STACK_SIZE (256 * 1024)
#define CK_GUARD_SIZE 4096

static int child_entry(void *arg)
{
    struct ck_ctx ctx = *(struct ck_ctx *)arg;
    ck_child(&ctx, 0);
}

/* A stack with a guard page below it, so an overflow is a crash (reported with its stage),
 * not corruption of the caller's memory. */
static void *make_stack(void)
{
    char *base = mmap(NULL, CK_CHILD_STACK_SIZE + CK_GUARD_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    if (mprotect(base, CK_GUARD_SIZE, PROT_NONE) < 0) {
        munmap(base, CK_CHILD_STACK_SIZE + CK_GUARD_SIZE);
        return NULL;
    }
    return base;
}

/* The clone of the direct path; in the supervisor the supervisor is the parent. */
static long clone_child(struct ck_page *page, void *stack, int *pidfd)
{
    return clone(child_entry, (char *)stack + CK_CHILD_STACK_SIZE + CK_GUARD_SIZE,
                 CLONE_VM | (pidfd != NULL ? CLONE_PIDFD : 0) | (int)clone_namespaces(page->ctx.cfg) | SIGCHLD,
                 &page->ctx, pidfd);
}

/* A supervised spawn's intermediate, a fork of the caller (its own copy of the address space,
 * so it survives the caller). Like the child it runs only async-signal-safe code: the caller's
 * other threads may have held locks at the fork. It clones the child as its own, reports the
 * child's pid, and becomes the supervisor program, which then reaps the child. The child shares
 * this process's copy of the address space until its own execve; our execve leaves that copy
 * to the child alone. */
__attribute__((noreturn)) static void supervisor(struct ck_page *page, void *stack)
{
    static const char *const empty_env[] = {NULL};
    struct ck_ctx ctx = page->ctx;
    const struct ck_spawn_config *cfg = ctx.cfg;
    struct ck_msg msg;
    int moved[CK_MAX_SUPERVISOR_FDS];
    int devnull, status, exec_fd = -1;
    uint32_t i;
    long pid;
    sigset_t none;

    if (ck_close_unneeded_fds(&ctx) < 0)
        ck_die(&ctx, CK_STAGE_CLOSE_FDS, errno, "close_range", NULL);
    /* A session of its own: the caller's terminal and job control must not reach it. */
    if (setsid() < 0)
        ck_die(&ctx, CK_STAGE_SUPERVISOR, errno, "setsid", NULL);
    pid = clone_child(page, stack, NULL);
    if (pid < 0)
        ck_die(&ctx, CK_STAGE_CLONE, errno, "clone", NULL);
    memset(&msg, 0, sizeof(msg));
    msg.type = CK_MSG_PID;
    msg.pid = (int32_t)pid;
    if (send(ctx.sock, &msg, sizeof(msg), MSG_NOSIGNAL) < 0)
        goto failed;

    /* The supervisor's descriptors become 3, 4, ...: first out of the way (a source, or the
     * executable's memfd, may already be one of those numbers), then into place; dup2 clears
     * close-on-exec on the result. */
    if (cfg->supervisor_exec_fd >= 0 &&
        (exec_fd = fcntl(cfg->supervisor_exec_fd, F_DUPFD_CLOEXEC, 3 + CK_MAX_SUPERVISOR_FDS)) < 0)
        goto failed;
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
    if (exec_fd >= 0)
        syscall(SYS_execveat, exec_fd, "", cfg->supervisor_argv, empty_env, AT_EMPTY_PATH);
    else
        execve(cfg->supervisor_path, (char *const *)cfg->supervisor_argv, (char *const *)empty_env);

failed:
    /* Report before reaping: the caller reads the failure, the child must not outlive us. */
    status = errno;
    kill((pid_t)pid, SIGKILL);
    while (waitpid((pid_t)pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
    ck_die(&ctx, CK_STAGE_SUPERVISOR, status, "start supervisor", cfg->supervisor_path);
}

/* Receives the grandchild's pid from an intermediate or a supervisor and opens a pidfd for it.
 * The grandchild blocks on the socket until CONTINUE, so its pid cannot be reused before. */
static int receive_pid(int sock, const struct ck_status *st, pid_t *pid, int *pidfd, struct ck_failure *failure)
{
    struct ck_msg msg;
    ssize_t n = recv_msg(sock, &msg, NULL);
    if (n != (ssize_t)sizeof(msg) || msg.type != CK_MSG_PID) {
        if (__atomic_load_n(&st->failed, __ATOMIC_ACQUIRE))
            return reported(failure, st);
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

/* One spare stack and status page, kept from the last spawn whose child has left them: mapping
 * and unmapping them on every spawn costs TLB shootdowns across the host's threads. */
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
static void *spare_stack;
static struct ck_page *spare_page;

static void *take_spare(void **slot)
{
    void *taken;
    pthread_mutex_lock(&spare_lock);
    taken = *slot;
    *slot = NULL;
    pthread_mutex_unlock(&spare_lock);
    return taken;
}

/* Keeps `mapping` as the spare if there is none; returns it if it was not kept. */
static void *keep_spare(void **slot, void *mapping)
{
    pthread_mutex_lock(&spare_lock);
    if (*slot == NULL) {
        *slot = mapping;
        mapping = NULL;
    }
    pthread_mutex_unlock(&spare_lock);
    return mapping;
}

void ck_spawn_release(struct ck_spawn_result *out)
{
    void *stack = out->stack, *page = out->status;
    out->stack = NULL;
    out->status = NULL;
    if (stack != NULL && (stack = keep_spare(&spare_stack, stack)) != NULL)
        munmap(stack, CK_CHILD_STACK_SIZE + CK_GUARD_SIZE);
    if (page != NULL && (page = keep_spare((void **)&spare_page, page)) != NULL)
        munmap(page, sizeof(struct ck_page));
    if (out->restore_dumpable) {
        out->restore_dumpable = 0;
        release_non_dumpable();
    }
}

int ck_spawn(const struct ck_spawn_config *cfg, struct ck_spawn_result *out, struct ck_failure *failure)
{
    sigset_t all, saved;
    int sp[2], pidfd = -1, supervisor_pidfd = -1, err;
    long pid;
    pid_t first;
    struct ck_page *page;
    int via_intermediate = cfg->join_pid_fd >= 0;
    int supervised = cfg->supervisor_path != NULL;
    int joins_mount = 0;
    uint32_t i;

    memset(out, 0, sizeof(*out));
    out->pidfd = out->sync_fd = out->supervisor_pidfd = -1;
    for (i = 0; i < cfg->join_count; i++)
        joins_mount |= cfg->join[i].type == CLONE_NEWNS;
    if (cfg->extra_fd_count > CK_MAX_EXTRA_FDS || cfg->join_count > CK_MAX_JOINS)
        return fail(failure, CK_STAGE_CLONE, EINVAL, "too many extra file descriptors or namespaces to join");
    /* Mounting the rootfs without a mount namespace of its own would mount on the host. */
    if (cfg->rootfs != NULL && !(cfg->clone_flags & CLONE_NEWNS) && !joins_mount)
        return fail(failure, CK_STAGE_ROOTFS, EINVAL, "a root filesystem needs a new or joined mount namespace");
    if (supervised && (via_intermediate || cfg->supervisor_fd_count > CK_MAX_SUPERVISOR_FDS))
        return fail(failure, CK_STAGE_SUPERVISOR, EINVAL,
                    via_intermediate ? "a supervised process cannot join a pid namespace" : "too many supervisor fds");
    page = take_spare((void **)&spare_page);
    if (page == NULL) {
        page = mmap(NULL, sizeof(*page), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED)
            return fail(failure, CK_STAGE_CLONE, errno, "map the status page");
    }
    memset(page, 0, sizeof(*page));
    out->status = &page->status;
    if (!via_intermediate && (out->stack = take_spare(&spare_stack)) == NULL && (out->stack = make_stack()) == NULL) {
        err = errno;
        ck_spawn_release(out);
        return fail(failure, CK_STAGE_CLONE, err, "map the child's stack");
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        err = errno;
        ck_spawn_release(out);
        return fail(failure, CK_STAGE_CLONE, err, "socketpair");
    }
    page->ctx.cfg = cfg;
    page->ctx.sock = sp[1];
    page->ctx.status = &page->status;
    page->ctx.trampoline = cfg->exec_trampoline_fd;

    /* The child starts with every signal blocked, so no host handler (Swift code) can run in
     * it before it has reset the dispositions; and non-dumpable (see hold_non_dumpable). */
    hold_non_dumpable();
    out->restore_dumpable = 1;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    if (supervised) {
        pid = clone3_raw(0, &supervisor_pidfd);
        if (pid == 0)
            supervisor(page, out->stack);
    } else if (via_intermediate) {
        pid = clone3_raw(0, NULL);
        if (pid == 0)
            intermediate(page);
    } else {
        pid = clone_child(page, out->stack, &pidfd);
    }
    err = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    /* A fork has its own (non-dumpable) copy of the address space: ours is ours again. */
    if (supervised || via_intermediate || pid < 0) {
        out->restore_dumpable = 0;
        release_non_dumpable();
    }
    close(sp[1]);
    if (pid < 0) {
        close(sp[0]);
        ck_spawn_release(out);
        return fail(failure, CK_STAGE_CLONE, err, "clone3");
    }

    first = (pid_t)pid;
    if (via_intermediate || supervised) {
        pid_t intermediate_pid = (pid_t)pid, child;
        int status, rc = receive_pid(sp[0], &page->status, &child, &pidfd, failure);
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
            ck_spawn_release(out);
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

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "init died at stage N: killed by signal S" for a child that left no report. */
static int died(struct ck_failure *f, int pidfd, const struct ck_status *st)
{
    char detail[96] = "init died before exec: ";
    char number[16];
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    /* EOF came from its exit: the exit status follows at once. WNOWAIT leaves it to be reaped. */
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOWAIT) < 0)
        ck_strlcat(detail, "no exit status", sizeof(detail));
    else if (info.si_code == CLD_EXITED) {
        ck_strlcat(detail, "exited with status ", sizeof(detail));
        ck_utoa((unsigned long)info.si_status, number, sizeof(number));
        ck_strlcat(detail, number, sizeof(detail));
    } else {
        ck_strlcat(detail, "killed by signal ", sizeof(detail));
        ck_utoa((unsigned long)info.si_status, number, sizeof(number));
        ck_strlcat(detail, number, sizeof(detail));
    }
    return fail(f, st->stage, 0, detail);
}

int ck_spawn_continue(const struct ck_spawn_config *cfg, struct ck_spawn_result *out, int *pty_master,
                      struct ck_failure *failure)
{
    const struct ck_status *st = out->status;
    struct ck_msg msg;
    long long deadline = cfg->init_timeout_ms > 0 ? now_ms() + cfg->init_timeout_ms : 0;
    int sync_fd = out->sync_fd, rc = 0;

    *pty_master = -1;
    out->sync_fd = -1;
    memset(&msg, 0, sizeof(msg));
    msg.type = CK_MSG_CONTINUE;
    /* A send error means the child is gone; what it recorded (if anything) is still there. */
    (void)send(sync_fd, &msg, sizeof(msg), MSG_NOSIGNAL);
    for (;;) {
        struct pollfd p = {sync_fd, POLLIN, 0};
        int fd, ready, wait = -1;
        ssize_t n;
        if (deadline != 0) {
            long long left = deadline - now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        ready = poll(&p, 1, wait);
        if (ready == 0) {
            char detail[64] = "init did not finish within ";
            char number[16];
            ck_utoa(cfg->init_timeout_ms, number, sizeof(number));
            ck_strlcat(detail, number, sizeof(detail));
            ck_strlcat(detail, " ms", sizeof(detail));
            syscall(SYS_pidfd_send_signal, out->pidfd, SIGKILL, NULL, 0);
            rc = fail(failure, st->stage, ETIMEDOUT, detail);
            failure->timed_out = 1;
            break;
        }
        n = ready < 0 ? -1 : recv_msg(sync_fd, &msg, &fd);
        if (n == 0) {
            /* EOF: every holder of the child's end has exec'd or exited. */
            if (__atomic_load_n(&st->failed, __ATOMIC_ACQUIRE))
                rc = reported(failure, st);
            else if (!__atomic_load_n(&st->exec, __ATOMIC_ACQUIRE))
                rc = died(failure, out->pidfd, st);
            break;
        }
        if (n < 0) {
            rc = fail(failure, CK_STAGE_HANDSHAKE, errno, "read from init");
            break;
        }
        if (n == (ssize_t)sizeof(msg) && msg.type == CK_MSG_PTY && fd >= 0 && *pty_master < 0) {
            *pty_master = fd;
            continue;
        }
        if (fd >= 0)
            close(fd);
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
