/*
 * The container's init sequence, run in the cloned child until execve.
 *
 * Async-signal-safe only: the child was cloned from a multi-threaded Swift process and owns
 * copies of locks other threads held at clone time (malloc, stdio, the Swift runtime, glibc's
 * setxid machinery). So: raw syscall(2) for anything glibc wraps with thread bookkeeping
 * (setgroups, setresuid, setresgid), no allocation, no stdio, no strerror; fixed stack buffers;
 * leave through execve or _exit. See ck_spawn.h for the protocol with the parent.
 */
#define _GNU_SOURCE
#include "ck_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT /* Linux 4.3 */
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef CLOSE_RANGE_CLOEXEC /* Linux 5.11 */
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef TIOCGPTPEER /* Linux 4.13 */
#define TIOCGPTPEER _IO('T', 0x41)
#endif

/* ---- small string helpers (no libc formatting in the child) ---- */

size_t ck_strlcat(char *dst, const char *src, size_t size)
{
    size_t len = strlen(dst);
    size_t i = 0;
    if (len >= size)
        return len;
    while (src[i] != '\0' && len + i + 1 < size) {
        dst[len + i] = src[i];
        i++;
    }
    dst[len + i] = '\0';
    return len + i;
}

void ck_utoa(unsigned long value, char *buf, size_t size)
{
    char tmp[24];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0 && n < sizeof(tmp));
    for (i = 0; i < n && i + 1 < size; i++)
        buf[i] = tmp[n - 1 - i];
    buf[i] = '\0';
}

/* "/proc/self/fd/N": the magic link through which mount(2) reaches an O_PATH descriptor. */
static void fd_path(int fd, char buf[32])
{
    buf[0] = '\0';
    ck_strlcat(buf, "/proc/self/fd/", 32);
    ck_utoa((unsigned long)fd, buf + strlen(buf), 12);
}

/* ---- reporting ---- */

static void send_msg(int sock, const struct ck_msg *msg)
{
    ssize_t rc;
    do {
        rc = send(sock, msg, sizeof(*msg), MSG_NOSIGNAL);
    } while (rc < 0 && errno == EINTR);
}

/* Sends {stage, errno, what + " " + object} to the parent and exits: the init sequence never
 * continues past a failed step. */
__attribute__((noreturn)) void ck_die(int sock, int stage, int err, const char *what, const char *object)
{
    struct ck_msg msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = CK_MSG_FAILURE;
    msg.stage = stage;
    msg.error = err;
    ck_strlcat(msg.detail, what, sizeof(msg.detail));
    if (object != NULL) {
        ck_strlcat(msg.detail, " ", sizeof(msg.detail));
        ck_strlcat(msg.detail, object, sizeof(msg.detail));
    }
    send_msg(sock, &msg);
    _exit(CK_EXIT_INIT_FAILED);
}

/* ---- paths inside the root filesystem ---- */

/* Opens `path` (absolute inside the container) under rootfd as the container would see it:
 * ".." and absolute symlinks stay inside the root (RESOLVE_IN_ROOT), so a hostile image cannot
 * make us mount over a host path. Missing directories are created, like runc's MkdirAll
 * under securejoin; the last component becomes an empty file when `is_file`. Returns an O_PATH
 * fd or -errno. */
int ck_open_in_root(int rootfd, const char *path, int is_file, int create)
{
    struct open_how how;
    char prefix[4096];
    size_t len = strlen(path), i = 0;
    int fd;

    memset(&how, 0, sizeof(how));
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    if (fd >= 0 || errno != ENOENT || !create)
        return fd >= 0 ? fd : -errno;
    if (len >= sizeof(prefix))
        return -ENAMETOOLONG;

    /* Walk the components; create each missing one in its (safely resolved) parent. */
    while (i < len) {
        size_t start, end;
        int parent, last;
        while (i < len && path[i] == '/')
            i++;
        start = i;
        while (i < len && path[i] != '/')
            i++;
        end = i;
        if (end == start)
            break;
        memcpy(prefix, path, end);
        prefix[end] = '\0';
        fd = (int)syscall(SYS_openat2, rootfd, prefix, &how, sizeof(how));
        if (fd >= 0) {
            close(fd);
            continue;
        }
        if (errno != ENOENT)
            return -errno;
        /* The parent exists (previous iteration): resolve it and create the component in it. */
        prefix[start] = '\0';
        parent = (int)syscall(SYS_openat2, rootfd, start > 0 ? prefix : "/", &how, sizeof(how));
        if (parent < 0)
            return -errno;
        memcpy(prefix, path + start, end - start);
        prefix[end - start] = '\0';
        while (i < len && path[i] == '/')
            i++;
        last = i >= len;
        if (last && is_file)
            fd = mknodat(parent, prefix, S_IFREG | 0644, 0);
        else
            fd = mkdirat(parent, prefix, 0755);
        if (fd < 0 && errno != EEXIST) {
            int err = errno;
            close(parent);
            return -err;
        }
        close(parent);
    }
    fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    return fd >= 0 ? fd : -errno;
}

/* mount_setattr(2) for read-only/nosuid/nodev/noexec: unlike MS_REMOUNT it keeps the flags the
 * kernel locked on mounts inherited from a more privileged user namespace. */
static int set_mount_attrs(int fd, uint32_t ms_flags, int recursive)
{
    struct mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    if (ms_flags & MS_RDONLY)
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    if (ms_flags & MS_NOSUID)
        attr.attr_set |= MOUNT_ATTR_NOSUID;
    if (ms_flags & MS_NODEV)
        attr.attr_set |= MOUNT_ATTR_NODEV;
    if (ms_flags & MS_NOEXEC)
        attr.attr_set |= MOUNT_ATTR_NOEXEC;
    if (attr.attr_set == 0)
        return 0;
    return (int)syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr,
                        sizeof(attr));
}

static void do_mount(int sock, int rootfd, const struct ck_mount *m)
{
    char target[32];
    int fd, after;

    fd = ck_open_in_root(rootfd, m->target, m->target_is_file, 1);
    if (fd < 0)
        ck_die(sock, CK_STAGE_MOUNT, -fd, "create mount point", m->target);
    fd_path(fd, target);

    if (m->kind == CK_MOUNT_BIND) {
        if (mount(m->source, target, NULL, MS_BIND | (m->flags & MS_REC), NULL) < 0)
            ck_die(sock, CK_STAGE_MOUNT, errno, "bind mount on", m->target);
    } else if (mount(m->source, target, m->fstype, m->flags & ~(uint32_t)MS_REC, m->data) < 0) {
        /* sysfs belongs to the network namespace: in a user namespace without its own netns the
         * kernel refuses a new instance, so bind the host's (read-only) instead, as runc does. */
        if (!(m->sysfs_fallback && (errno == EPERM || errno == EBUSY)))
            ck_die(sock, CK_STAGE_MOUNT, errno, m->fstype, m->target);
        if (mount("/sys", target, NULL, MS_BIND | MS_REC, NULL) < 0)
            ck_die(sock, CK_STAGE_MOUNT, errno, "bind /sys on", m->target);
    }
    close(fd);

    /* The attributes apply to the new mount, not the directory under it: reopen the target. */
    if (m->kind == CK_MOUNT_BIND || m->sysfs_fallback || m->propagation != 0) {
        after = ck_open_in_root(rootfd, m->target, 0, 0);
        if (after < 0)
            ck_die(sock, CK_STAGE_MOUNT, -after, "reopen", m->target);
        if ((m->kind == CK_MOUNT_BIND || m->sysfs_fallback) && set_mount_attrs(after, m->flags, 1) < 0)
            ck_die(sock, CK_STAGE_MOUNT, errno, "set mount attributes on", m->target);
        if (m->propagation != 0) {
            fd_path(after, target);
            if (mount(NULL, target, NULL, m->propagation, NULL) < 0)
                ck_die(sock, CK_STAGE_MOUNT, errno, "set propagation on", m->target);
        }
        close(after);
    }
}

/* Device nodes in the container's /dev tmpfs. Inside a user namespace mknod is refused, so the
 * host's node is bind-mounted over an empty file instead (runc does the same). */
static void create_devices(int sock, int rootfd, const struct ck_spawn_config *cfg)
{
    uint32_t i;
    for (i = 0; i < cfg->device_count; i++) {
        const struct ck_device *d = &cfg->devices[i];
        const char *slash = strrchr(d->path, '/');
        char parent_path[256], target[32];
        int parent, fd;
        size_t plen = slash != NULL ? (size_t)(slash - d->path) : 0;

        if (slash == NULL || plen >= sizeof(parent_path))
            ck_die(sock, CK_STAGE_DEVICES, EINVAL, "device path", d->path);
        memcpy(parent_path, d->path, plen);
        parent_path[plen] = '\0';
        parent = ck_open_in_root(rootfd, plen > 0 ? parent_path : "/", 0, 1);
        if (parent < 0)
            ck_die(sock, CK_STAGE_DEVICES, -parent, "open parent of", d->path);
        if (mknodat(parent, slash + 1, d->mode, makedev(d->major, d->minor)) == 0) {
            if (fchownat(parent, slash + 1, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
                ck_die(sock, CK_STAGE_DEVICES, errno, "chown", d->path);
        } else if (errno == EPERM) {
            fd = ck_open_in_root(rootfd, d->path, 1, 1);
            if (fd < 0)
                ck_die(sock, CK_STAGE_DEVICES, -fd, "create", d->path);
            fd_path(fd, target);
            if (mount(d->path, target, NULL, MS_BIND, NULL) < 0)
                ck_die(sock, CK_STAGE_DEVICES, errno, "bind host device", d->path);
            close(fd);
        } else if (errno != EEXIST) {
            ck_die(sock, CK_STAGE_DEVICES, errno, "mknod", d->path);
        }
        close(parent);
    }

    if (cfg->dev_symlinks) {
        static const char *const links[][2] = {
            {"fd", "/proc/self/fd"},
            {"stdin", "/proc/self/fd/0"},
            {"stdout", "/proc/self/fd/1"},
            {"stderr", "/proc/self/fd/2"},
            {"ptmx", "pts/ptmx"},
        };
        int dev = ck_open_in_root(rootfd, "/dev", 0, 1);
        size_t i2;
        if (dev < 0)
            ck_die(sock, CK_STAGE_DEVICES, -dev, "open", "/dev");
        for (i2 = 0; i2 < sizeof(links) / sizeof(links[0]); i2++)
            if (symlinkat(links[i2][1], dev, links[i2][0]) < 0 && errno != EEXIST)
                ck_die(sock, CK_STAGE_DEVICES, errno, "symlink /dev/", links[i2][0]);
        close(dev);
    }
}

static void pivot_into(int sock, int rootfd)
{
    /* pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
     * nothing of the host reachable (runc's pivotRoot, without a temporary directory). The
     * earlier MS_SLAVE|MS_REC on "/" keeps this umount from propagating to the host. */
    if (fchdir(rootfd) < 0)
        ck_die(sock, CK_STAGE_PIVOT_ROOT, errno, "fchdir", "rootfs");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        ck_die(sock, CK_STAGE_PIVOT_ROOT, errno, "pivot_root", NULL);
    if (umount2(".", MNT_DETACH) < 0)
        ck_die(sock, CK_STAGE_PIVOT_ROOT, errno, "detach old root", NULL);
    if (chdir("/") < 0)
        ck_die(sock, CK_STAGE_PIVOT_ROOT, errno, "chdir", "/");
}

static void write_sysctls(int sock, const struct ck_spawn_config *cfg)
{
    uint32_t i;
    for (i = 0; i < cfg->sysctl_count; i++) {
        char path[512] = "/proc/sys/";
        size_t len = strlen(cfg->sysctls[i].value);
        int fd;
        ck_strlcat(path, cfg->sysctls[i].key, sizeof(path));
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            ck_die(sock, CK_STAGE_SYSCTL, errno, "open", path);
        if (write(fd, cfg->sysctls[i].value, len) != (ssize_t)len)
            ck_die(sock, CK_STAGE_SYSCTL, errno, "write", path);
        close(fd);
    }
}

/* Masked paths: directories get an empty read-only tmpfs, files get /dev/null; missing ones
 * are skipped, as in the OCI runtime spec's maskedPaths. */
static void mask_paths(int sock, const struct ck_spawn_config *cfg)
{
    uint32_t i;
    for (i = 0; i < cfg->masked_count; i++) {
        const char *p = cfg->masked_paths[i];
        struct stat st;
        char target[32];
        int fd = open(p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        int rc;
        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            ck_die(sock, CK_STAGE_MASKED_PATHS, errno, "open", p);
        }
        if (fstat(fd, &st) < 0)
            ck_die(sock, CK_STAGE_MASKED_PATHS, errno, "stat", p);
        fd_path(fd, target);
        if (S_ISDIR(st.st_mode))
            rc = mount("tmpfs", target, "tmpfs", MS_RDONLY, "size=0");
        else
            rc = mount("/dev/null", target, NULL, MS_BIND, NULL);
        if (rc < 0)
            ck_die(sock, CK_STAGE_MASKED_PATHS, errno, "mask", p);
        close(fd);
    }
}

static void readonly_paths(int sock, const struct ck_spawn_config *cfg)
{
    uint32_t i;
    for (i = 0; i < cfg->readonly_count; i++) {
        const char *p = cfg->readonly_paths[i];
        char target[32];
        int fd = open(p, O_PATH | O_NOFOLLOW | O_CLOEXEC), after;
        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            ck_die(sock, CK_STAGE_READONLY_PATHS, errno, "open", p);
        }
        fd_path(fd, target);
        if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0)
            ck_die(sock, CK_STAGE_READONLY_PATHS, errno, "bind", p);
        close(fd);
        after = open(p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (after < 0 || set_mount_attrs(after, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 1) < 0)
            ck_die(sock, CK_STAGE_READONLY_PATHS, errno, "make read-only", p);
        close(after);
    }
}

/* The terminal is allocated in the container's own devpts instance (so `tty` prints a path that
 * exists inside), and its master is handed to the parent over the sync socket, as runc's
 * console socket does. Returns the slave fd. */
static int open_terminal(int sock, const struct ck_spawn_config *cfg)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr mh;
    struct iovec iov;
    struct cmsghdr *cm;
    struct ck_msg msg;
    int unlock = 0;
    int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC), slave;

    if (master < 0)
        ck_die(sock, CK_STAGE_TERMINAL, errno, "open", "/dev/pts/ptmx");
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        ck_die(sock, CK_STAGE_TERMINAL, errno, "unlock", "pty");
    slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        ck_die(sock, CK_STAGE_TERMINAL, errno, "open", "pty peer");
    if (fchown(slave, cfg->uid, (gid_t)-1) < 0)
        ck_die(sock, CK_STAGE_TERMINAL, errno, "chown", "pty");

    memset(&msg, 0, sizeof(msg));
    msg.type = CK_MSG_PTY;
    memset(&mh, 0, sizeof(mh));
    memset(cbuf, 0, sizeof(cbuf));
    iov.iov_base = &msg;
    iov.iov_len = sizeof(msg);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof(cbuf);
    cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &master, sizeof(int));
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
        ck_die(sock, CK_STAGE_TERMINAL, errno, "send", "pty master");
    close(master);
    return slave;
}

/* Puts the stdio fds (and extra fds) in place. Two passes, because a source may sit on a target
 * number: first everything moves above the highest target, then dup2 into place (dup2 clears
 * close-on-exec on the new descriptor). Returns the (possibly moved) sync socket. */
static int place_fds(int sock, const struct ck_spawn_config *cfg, int terminal_fd)
{
    int moved[3 + CK_MAX_EXTRA_FDS];
    int floor = 3 + (int)cfg->extra_fd_count;
    uint32_t n = 3 + cfg->extra_fd_count, i;

    if (sock < floor) {
        int s = fcntl(sock, F_DUPFD_CLOEXEC, floor);
        if (s < 0)
            ck_die(sock, CK_STAGE_STDIO, errno, "move", "sync socket");
        close(sock);
        sock = s;
    }
    for (i = 0; i < n; i++) {
        int src = i < 3 ? (terminal_fd >= 0 ? terminal_fd : cfg->stdio[i]) : cfg->extra_fds[i - 3];
        moved[i] = fcntl(src, F_DUPFD_CLOEXEC, floor);
        if (moved[i] < 0)
            ck_die(sock, CK_STAGE_STDIO, errno, "duplicate", "stdio");
    }
    for (i = 0; i < n; i++) {
        if (dup2(moved[i], (int)i) < 0)
            ck_die(sock, CK_STAGE_STDIO, errno, "dup2", "stdio");
        close(moved[i]);
    }
    return sock;
}

static void set_capabilities(int sock, const struct ck_spawn_config *cfg)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    uint32_t cap;

    data[0].effective = (uint32_t)cfg->cap_effective;
    data[1].effective = (uint32_t)(cfg->cap_effective >> 32);
    data[0].permitted = (uint32_t)cfg->cap_permitted;
    data[1].permitted = (uint32_t)(cfg->cap_permitted >> 32);
    data[0].inheritable = (uint32_t)cfg->cap_inheritable;
    data[1].inheritable = (uint32_t)(cfg->cap_inheritable >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0)
        ck_die(sock, CK_STAGE_CAPABILITIES, errno, "capset", NULL);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        ck_die(sock, CK_STAGE_CAPABILITIES, errno, "clear ambient capabilities", NULL);
    for (cap = 0; cap <= cfg->cap_last && cap < 64; cap++)
        if ((cfg->cap_ambient >> cap) & 1)
            if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                ck_die(sock, CK_STAGE_CAPABILITIES, errno, "raise ambient capability", NULL);
}

static void load_seccomp(int sock, const struct ck_spawn_config *cfg)
{
    struct sock_fprog prog;
    if (cfg->seccomp_filter == NULL)
        return;
    prog.len = (unsigned short)cfg->seccomp_len;
    prog.filter = (struct sock_filter *)(uintptr_t)cfg->seccomp_filter;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, cfg->seccomp_flags, &prog) < 0)
        ck_die(sock, CK_STAGE_SECCOMP, errno, "load seccomp filter", NULL);
}

/* execve with a PATH search done here, in the container's root, as execvpe would (but
 * without its allocation). */
__attribute__((noreturn)) static void exec_program(int sock, const struct ck_spawn_config *cfg)
{
    const char *prog = cfg->argv[0];
    char quoted[300] = "\"";
    int err = ENOENT;

    ck_strlcat(quoted, prog, sizeof(quoted));
    ck_strlcat(quoted, "\"", sizeof(quoted));
    if (strchr(prog, '/') != NULL) {
        execve(prog, (char *const *)cfg->argv, (char *const *)cfg->envp);
        ck_die(sock, CK_STAGE_EXEC, errno, "exec", quoted);
    }
    if (cfg->path != NULL) {
        const char *p = cfg->path;
        while (*p != '\0') {
            char full[4096];
            const char *colon = strchr(p, ':');
            size_t dlen = colon != NULL ? (size_t)(colon - p) : strlen(p);
            if (dlen + strlen(prog) + 2 < sizeof(full)) {
                memcpy(full, p, dlen);
                full[dlen] = '\0';
                if (dlen == 0)
                    ck_strlcat(full, ".", sizeof(full));
                ck_strlcat(full, "/", sizeof(full));
                ck_strlcat(full, prog, sizeof(full));
                execve(full, (char *const *)cfg->argv, (char *const *)cfg->envp);
                /* Keep looking past ENOENT/ENOTDIR; remember EACCES as execvp does. */
                if (errno == EACCES)
                    err = EACCES;
                else if (errno != ENOENT && errno != ENOTDIR)
                    ck_die(sock, CK_STAGE_EXEC, errno, "exec", quoted);
            }
            if (colon == NULL)
                break;
            p = colon + 1;
        }
    }
    if (err == ENOENT)
        ck_strlcat(quoted, ": executable file not found in $PATH", sizeof(quoted));
    ck_die(sock, CK_STAGE_EXEC, err, "exec", quoted);
}

void ck_reset_signal_dispositions(void)
{
    int sig;
    for (sig = 1; sig < _NSIG; sig++) {
        struct sigaction sa;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        sigaction(sig, &sa, NULL);
    }
}

__attribute__((noreturn)) void ck_child(const struct ck_spawn_config *cfg, int sock, int joined)
{
    struct ck_msg msg;
    sigset_t none;
    ssize_t n;
    uint32_t i;
    int rootfd = -1, terminal_fd = -1;

    /* Handlers installed by the host (Swift runtime, SIGPIPE ignored by servers) must not reach
     * the container: reset every disposition while all signals are still blocked (the parent
     * blocked them around clone). SIG_IGN would otherwise survive execve. */
    ck_reset_signal_dispositions();
    if (cfg->pdeath_signal != 0 && prctl(PR_SET_PDEATHSIG, cfg->pdeath_signal, 0, 0, 0) < 0)
        ck_die(sock, CK_STAGE_HANDSHAKE, errno, "prctl(PR_SET_PDEATHSIG)", NULL);

    /* Wait for the parent: it writes uid/gid maps, rlimits and cgroup membership (v1) before
     * we may do anything that depends on them. EOF means the parent is gone. */
    do {
        n = recv(sock, &msg, sizeof(msg), 0);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(msg) || msg.type != CK_MSG_CONTINUE)
        _exit(CK_EXIT_INIT_FAILED);

    /* Join namespaces (not pid: that needs a second clone, done in ck_spawn). The user
     * namespace comes first so the others are joined with its privileges. */
    if (!joined)
        for (i = 0; i < cfg->join_count; i++)
            if (setns(cfg->join[i].fd, cfg->join[i].type) < 0)
                ck_die(sock, CK_STAGE_SETNS, errno, "setns", ck_ns_name(cfg->join[i].type));

    /* In a new user namespace our ids are still the host's, which the namespace does not map:
     * become its root first, or every file we create (mount points, devices) fails with
     * EOVERFLOW. The maps were written by the parent before CONTINUE. */
    if (cfg->clone_flags & CLONE_NEWUSER) {
        if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
            ck_die(sock, CK_STAGE_IDENTITY, errno, "become root in the user namespace", NULL);
    }

    if (setsid() < 0)
        ck_die(sock, CK_STAGE_SETSID, errno, "setsid", NULL);
    /* Modes of created mount points and devices must not depend on the host's umask. */
    umask(0);

    if (cfg->clone_flags & CLONE_NEWNS) {
        /* Nothing we mount may propagate back to the host: make the copied tree a slave (or
         * what was asked) before the first mount. */
        if (mount(NULL, "/", NULL, cfg->rootfs_propagation, NULL) < 0)
            ck_die(sock, CK_STAGE_PROPAGATION, errno, "make / private/slave", NULL);
    }
    if (cfg->rootfs != NULL) {
        /* pivot_root needs the new root to be a mount point: bind it onto itself, then open
         * the result (the old fd would still name the directory under the mount). */
        if (mount(cfg->rootfs, cfg->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
            ck_die(sock, CK_STAGE_ROOTFS, errno, "bind rootfs", cfg->rootfs);
        rootfd = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
            ck_die(sock, CK_STAGE_ROOTFS, errno, "open rootfs", cfg->rootfs);
        for (i = 0; i < cfg->mount_count; i++)
            do_mount(sock, rootfd, &cfg->mounts[i]);
        create_devices(sock, rootfd, cfg);
        pivot_into(sock, rootfd);
        close(rootfd);
        if (cfg->rootfs_readonly) {
            struct mount_attr attr;
            memset(&attr, 0, sizeof(attr));
            attr.attr_set = MOUNT_ATTR_RDONLY;
            if (syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, &attr, sizeof(attr)) < 0)
                ck_die(sock, CK_STAGE_READONLY_ROOT, errno, "remount / read-only", NULL);
        }
    }

    if (cfg->hostname != NULL && sethostname(cfg->hostname, strlen(cfg->hostname)) < 0)
        ck_die(sock, CK_STAGE_HOSTNAME, errno, "sethostname", cfg->hostname);
    if (cfg->domainname != NULL && setdomainname(cfg->domainname, strlen(cfg->domainname)) < 0)
        ck_die(sock, CK_STAGE_HOSTNAME, errno, "setdomainname", cfg->domainname);

    /* Sysctls before masked and read-only paths: /proc/sys goes read-only there, so later writes
     * would fail (runc's standard_init_linux.go uses the same order). */
    write_sysctls(sock, cfg);
    mask_paths(sock, cfg);
    readonly_paths(sock, cfg);

    /* The terminal comes after pivot_root so it lives in the container's devpts. */
    if (cfg->terminal)
        terminal_fd = open_terminal(sock, cfg);
    sock = place_fds(sock, cfg, terminal_fd);
    if (terminal_fd >= 0) {
        close(terminal_fd);
        if (ioctl(0, TIOCSCTTY, 0) < 0)
            ck_die(sock, CK_STAGE_TERMINAL, errno, "make controlling terminal", NULL);
    }

    if (cfg->cwd != NULL && chdir(cfg->cwd) < 0)
        ck_die(sock, CK_STAGE_CHDIR, errno, "chdir", cfg->cwd);

    /* Every descriptor we did not place is closed at execve, including any the host leaked
     * without O_CLOEXEC: late, so nothing opened above survives (runc CVE-2024-21626). */
    if (syscall(SYS_close_range, 3 + cfg->extra_fd_count, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        ck_die(sock, CK_STAGE_CLOSE_FDS, errno, "close_range", NULL);

    /* Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: load it while we still
     * have every capability. With no_new_privs it goes last, so the filter need not allow
     * the setup calls below (runc orders it the same way). */
    if (!cfg->no_new_privs)
        load_seccomp(sock, cfg);

    /* Capabilities in two phases around the identity change: the bounding set shrinks and
     * keep-caps holds the permitted set across setresuid; the final sets come after. */
    for (i = 0; i <= cfg->cap_last && i < 64; i++)
        if (!((cfg->cap_bounding >> i) & 1) && prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0)
            ck_die(sock, CK_STAGE_CAPABILITIES, errno, "drop from bounding set", NULL);
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        ck_die(sock, CK_STAGE_CAPABILITIES, errno, "prctl(PR_SET_KEEPCAPS)", NULL);

    /* Raw syscalls: glibc's wrappers would try to synchronise threads that do not exist here. */
    if (syscall(SYS_setgroups, (size_t)cfg->group_count, cfg->groups) < 0)
        ck_die(sock, CK_STAGE_IDENTITY, errno, "setgroups", NULL);
    if (syscall(SYS_setresgid, cfg->gid, cfg->gid, cfg->gid) < 0)
        ck_die(sock, CK_STAGE_IDENTITY, errno, "setresgid", NULL);
    if (syscall(SYS_setresuid, cfg->uid, cfg->uid, cfg->uid) < 0)
        ck_die(sock, CK_STAGE_IDENTITY, errno, "setresuid", NULL);
    set_capabilities(sock, cfg);

    /* A credential change clears the parent-death signal: arm it again. */
    if (cfg->pdeath_signal != 0 && prctl(PR_SET_PDEATHSIG, cfg->pdeath_signal, 0, 0, 0) < 0)
        ck_die(sock, CK_STAGE_HANDSHAKE, errno, "prctl(PR_SET_PDEATHSIG)", NULL);

    if (cfg->umask >= 0)
        umask((mode_t)cfg->umask);
    if (cfg->no_new_privs) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            ck_die(sock, CK_STAGE_NO_NEW_PRIVS, errno, "prctl(PR_SET_NO_NEW_PRIVS)", NULL);
        load_seccomp(sock, cfg);
    }

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    exec_program(sock, cfg);
}
