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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
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
#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
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

/* Records {stage, errno, what + " " + object} in the shared status page and exits: the init
 * sequence never continues past a failed step. No system call is needed to report, so a
 * seccomp filter that denies send() cannot hide a failure. */
__attribute__((noreturn)) void ck_die(struct ck_ctx *ctx, int stage, int err, const char *what, const char *object)
{
    struct ck_status *st = ctx->status;
    st->stage = stage;
    st->error = err;
    st->detail[0] = '\0';
    ck_strlcat(st->detail, what, sizeof(st->detail));
    if (object != NULL) {
        ck_strlcat(st->detail, " ", sizeof(st->detail));
        ck_strlcat(st->detail, object, sizeof(st->detail));
    }
    __atomic_store_n(&st->failed, 1, __ATOMIC_RELEASE);
    _exit(CK_EXIT_INIT_FAILED);
}

static void at_stage(struct ck_ctx *ctx, int stage) { ctx->status->stage = stage; }

/* ---- descriptors ---- */

static void add_fd(int *keep, size_t *n, int fd)
{
    size_t i;
    if (fd < 0)
        return;
    for (i = 0; i < *n; i++)
        if (keep[i] == fd)
            return;
    /* Insertion keeps the list sorted; it holds a few dozen entries at most. */
    i = *n;
    while (i > 0 && keep[i - 1] > fd) {
        keep[i] = keep[i - 1];
        i--;
    }
    keep[i] = fd;
    (*n)++;
}

/* Closes [from, to] (to = ~0U: to the end). */
static int close_fd_range(unsigned from, unsigned to)
{
    return (int)syscall(SYS_close_range, from, to, 0);
}

int ck_close_unneeded_fds(const struct ck_ctx *ctx)
{
    const struct ck_spawn_config *cfg = ctx->cfg;
    int keep[6 + 3 + CK_MAX_EXTRA_FDS + CK_MAX_JOINS + CK_MAX_SUPERVISOR_FDS];
    size_t n = 0, i;
    unsigned next = 0;

    add_fd(keep, &n, ctx->sock);
    for (i = 0; i < 3; i++)
        add_fd(keep, &n, cfg->stdio[i]);
    for (i = 0; i < cfg->extra_fd_count; i++)
        add_fd(keep, &n, cfg->extra_fds[i]);
    for (i = 0; i < cfg->join_count; i++)
        add_fd(keep, &n, cfg->join[i].fd);
    add_fd(keep, &n, cfg->join_pid_fd);
    for (i = 0; i < cfg->supervisor_fd_count; i++)
        add_fd(keep, &n, cfg->supervisor_fds[i]);
    if (cfg->supervisor_path != NULL)
        add_fd(keep, &n, cfg->supervisor_exec_fd);
    add_fd(keep, &n, ctx->trampoline);
    for (i = 0; i < n; i++) {
        if ((unsigned)keep[i] > next && close_fd_range(next, (unsigned)keep[i] - 1) < 0)
            return -1;
        next = (unsigned)keep[i] + 1;
    }
    return close_fd_range(next, ~0U);
}

/* ---- paths inside the root filesystem ---- */

/* openat2 below rootfd with ".." and symlinks kept inside it and no magic links (a
 * /proc/self/fd/N or /proc/<pid>/root can never lead out). The kernel answers EAGAIN when a
 * rename or mount anywhere raced with a "..": retry, as openat2(2) says. */
static int openat2_in_root(int rootfd, const char *path, uint64_t flags, uint64_t resolve)
{
    struct open_how how;
    int fd, tries = 0;
    memset(&how, 0, sizeof(how));
    how.flags = flags | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | resolve;
    do {
        fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    } while (fd < 0 && errno == EAGAIN && ++tries < 64);
    return fd;
}

/* Opens `path` (absolute inside the container) under rootfd as the container would see it:
 * ".." and absolute symlinks stay inside the root (RESOLVE_IN_ROOT), so a hostile image cannot
 * make us mount over a host path. Missing directories are created, like runc's MkdirAll
 * under securejoin; the last component becomes an empty file when `is_file`. Returns an O_PATH
 * fd or -errno. */
int ck_open_in_root(int rootfd, const char *path, int is_file, int create)
{
    char prefix[4096];
    size_t len = strlen(path), i = 0;
    int fd;

    fd = openat2_in_root(rootfd, path, O_PATH, 0);
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
        fd = openat2_in_root(rootfd, prefix, O_PATH, 0);
        if (fd >= 0) {
            close(fd);
            continue;
        }
        if (errno != ENOENT)
            return -errno;
        /* The parent exists (previous iteration): resolve it and create the component in it. */
        prefix[start] = '\0';
        parent = openat2_in_root(rootfd, start > 0 ? prefix : "/", O_PATH, 0);
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
    fd = openat2_in_root(rootfd, path, O_PATH, 0);
    return fd >= 0 ? fd : -errno;
}

/* Where an fd below the root lies, as an absolute path inside the root ("/" for the root):
 * the kernel's name for it (readlink of /proc/self/fd/N, before pivot_root: the host's /proc)
 * less the root's own name. -1 when it is not below the root. */
static int path_in_root(int fd, const char *root_name, char *out, size_t size)
{
    char link[32], full[4096];
    size_t rlen = strlen(root_name);
    ssize_t n;

    fd_path(fd, link);
    n = readlink(link, full, sizeof(full) - 1);
    if (n < 0)
        return -1;
    full[n] = '\0';
    if (strncmp(full, root_name, rlen) != 0 || (full[rlen] != '\0' && full[rlen] != '/'))
        return -1;
    out[0] = '\0';
    ck_strlcat(out, full[rlen] == '\0' ? "/" : full + rlen, size);
    return 0;
}

/* `path` is `dir` or below it. */
static int is_under(const char *path, const char *dir)
{
    size_t len = strlen(dir);
    return strncmp(path, dir, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

/* The kernel's file systems of a container: what is mounted there is the runtime's to say. */
static int is_kernel_path(const char *path)
{
    return is_under(path, "/proc") || is_under(path, "/sys") || is_under(path, "/dev");
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

/* Refuses a mount that would put something of the caller's choosing where the kernel's file
 * systems are, as runc does: a target reached through a symlink when either end is below
 * /proc, /sys or /dev (an image whose /dev links into a volume; a volume whose link leads into
 * /proc), and a bind mount on /proc, /sys or /dev itself or anywhere below /proc (a host file
 * bound over a masked or read-only proc file). */
static void check_mount_target(struct ck_ctx *ctx, int fd, const char *root_name, const struct ck_mount *m)
{
    char real[4096];
    if (path_in_root(fd, root_name, real, sizeof(real)) < 0)
        ck_die(ctx, CK_STAGE_MOUNT, EXDEV, "mount target is outside the root filesystem:", m->target);
    if ((is_kernel_path(m->target) || is_kernel_path(real)) && strcmp(real, m->target) != 0) {
        char detail[160] = "";
        ck_strlcat(detail, m->target, sizeof(detail));
        ck_strlcat(detail, " resolves to ", sizeof(detail));
        ck_strlcat(detail, real, sizeof(detail));
        ck_die(ctx, CK_STAGE_MOUNT, ELOOP, "mount target reached through a symlink:", detail);
    }
    if (m->kind == CK_MOUNT_BIND &&
        (strcmp(real, "/proc") == 0 || is_under(real, "/proc") || strcmp(real, "/sys") == 0 || strcmp(real, "/dev") == 0))
        ck_die(ctx, CK_STAGE_MOUNT, EPERM, "bind mount over the kernel's file system is not allowed:", m->target);
}

static void do_mount(struct ck_ctx *ctx, int rootfd, const char *root_name, const struct ck_mount *m)
{
    char target[32];
    int fd, after;

    fd = ck_open_in_root(rootfd, m->target, m->target_is_file, 1);
    if (fd < 0)
        ck_die(ctx, CK_STAGE_MOUNT, -fd, "create mount point", m->target);
    check_mount_target(ctx, fd, root_name, m);
    fd_path(fd, target);

    if (m->kind == CK_MOUNT_BIND) {
        if (mount(m->source, target, NULL, MS_BIND | (m->flags & MS_REC), NULL) < 0)
            ck_die(ctx, CK_STAGE_MOUNT, errno, "bind mount on", m->target);
    } else if (mount(m->source, target, m->fstype, m->flags & ~(uint32_t)MS_REC, m->data) < 0) {
        /* sysfs belongs to the network namespace: in a user namespace without its own netns the
         * kernel refuses a new instance, so bind the host's (read-only) instead, as runc does. */
        if (!(m->sysfs_fallback && (errno == EPERM || errno == EBUSY)))
            ck_die(ctx, CK_STAGE_MOUNT, errno, m->fstype, m->target);
        if (mount("/sys", target, NULL, MS_BIND | MS_REC, NULL) < 0)
            ck_die(ctx, CK_STAGE_MOUNT, errno, "bind /sys on", m->target);
    }
    close(fd);

    /* The attributes apply to the new mount, not the directory under it: reopen the target. */
    if (m->kind == CK_MOUNT_BIND || m->sysfs_fallback || m->propagation != 0) {
        after = ck_open_in_root(rootfd, m->target, 0, 0);
        if (after < 0)
            ck_die(ctx, CK_STAGE_MOUNT, -after, "reopen", m->target);
        if ((m->kind == CK_MOUNT_BIND || m->sysfs_fallback) && set_mount_attrs(after, m->flags, 1) < 0)
            ck_die(ctx, CK_STAGE_MOUNT, errno, "set mount attributes on", m->target);
        if (m->propagation != 0) {
            fd_path(after, target);
            if (mount(NULL, target, NULL, m->propagation, NULL) < 0)
                ck_die(ctx, CK_STAGE_MOUNT, errno, "set propagation on", m->target);
        }
        close(after);
    }
}

/* Device nodes in the container's /dev tmpfs. Inside a user namespace mknod is refused, so the
 * host's node is bind-mounted over an empty file instead (runc does the same). A node that is
 * already there must be that very device: a /dev the container chose (a volume, an image's
 * directory) could hold anything under the name. */
static void create_devices(struct ck_ctx *ctx, int rootfd)
{
    const struct ck_spawn_config *cfg = ctx->cfg;
    uint32_t i;
    for (i = 0; i < cfg->device_count; i++) {
        const struct ck_device *d = &cfg->devices[i];
        const char *slash = strrchr(d->path, '/');
        char parent_path[256], target[32];
        int parent, fd;
        struct stat st;
        size_t plen = slash != NULL ? (size_t)(slash - d->path) : 0;

        if (slash == NULL || plen >= sizeof(parent_path))
            ck_die(ctx, CK_STAGE_DEVICES, EINVAL, "device path", d->path);
        memcpy(parent_path, d->path, plen);
        parent_path[plen] = '\0';
        parent = ck_open_in_root(rootfd, plen > 0 ? parent_path : "/", 0, 1);
        if (parent < 0)
            ck_die(ctx, CK_STAGE_DEVICES, -parent, "open parent of", d->path);
        if (mknodat(parent, slash + 1, d->mode, makedev(d->major, d->minor)) == 0) {
            if (fchownat(parent, slash + 1, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
                ck_die(ctx, CK_STAGE_DEVICES, errno, "chown", d->path);
        } else if (errno == EPERM) {
            fd = ck_open_in_root(rootfd, d->path, 1, 1);
            if (fd < 0)
                ck_die(ctx, CK_STAGE_DEVICES, -fd, "create", d->path);
            if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
                ck_die(ctx, CK_STAGE_DEVICES, EEXIST, "not a file or device:", d->path);
            fd_path(fd, target);
            if (mount(d->path, target, NULL, MS_BIND, NULL) < 0)
                ck_die(ctx, CK_STAGE_DEVICES, errno, "bind host device", d->path);
            close(fd);
        } else if (errno != EEXIST) {
            ck_die(ctx, CK_STAGE_DEVICES, errno, "mknod", d->path);
        } else if (fstatat(parent, slash + 1, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                   (st.st_mode & S_IFMT) != (d->mode & S_IFMT) || st.st_rdev != makedev(d->major, d->minor)) {
            ck_die(ctx, CK_STAGE_DEVICES, EEXIST, "exists and is not the expected device:", d->path);
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
            ck_die(ctx, CK_STAGE_DEVICES, -dev, "open", "/dev");
        for (i2 = 0; i2 < sizeof(links) / sizeof(links[0]); i2++)
            if (symlinkat(links[i2][1], dev, links[i2][0]) < 0 && errno != EEXIST)
                ck_die(ctx, CK_STAGE_DEVICES, errno, "symlink /dev/", links[i2][0]);
        close(dev);
    }
}

static void pivot_into(struct ck_ctx *ctx, int rootfd)
{
    /* pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
     * nothing of the host reachable (runc's pivotRoot, without a temporary directory). The old
     * root is made a recursive slave first, so that the detach cannot propagate to the host
     * whatever propagation the caller asked for "/". */
    at_stage(ctx, CK_STAGE_PIVOT_ROOT);
    if (fchdir(rootfd) < 0)
        ck_die(ctx, CK_STAGE_PIVOT_ROOT, errno, "fchdir", "rootfs");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        ck_die(ctx, CK_STAGE_PIVOT_ROOT, errno, "pivot_root", NULL);
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        ck_die(ctx, CK_STAGE_PIVOT_ROOT, errno, "make the old root a slave", NULL);
    if (umount2(".", MNT_DETACH) < 0)
        ck_die(ctx, CK_STAGE_PIVOT_ROOT, errno, "detach old root", NULL);
    if (chdir("/") < 0)
        ck_die(ctx, CK_STAGE_PIVOT_ROOT, errno, "chdir", "/");
}

/* Sysctls go through the container's own /proc (below rootfd) and must land on procfs: a
 * mount the caller made under /proc/sys cannot redirect the write. */
static void write_sysctls(struct ck_ctx *ctx, int rootfd)
{
    const struct ck_spawn_config *cfg = ctx->cfg;
    uint32_t i;
    at_stage(ctx, CK_STAGE_SYSCTL);
    for (i = 0; i < cfg->sysctl_count; i++) {
        char path[512] = "/proc/sys/";
        size_t len = strlen(cfg->sysctls[i].value);
        struct statfs fs;
        int fd;
        ck_strlcat(path, cfg->sysctls[i].key, sizeof(path));
        fd = openat2_in_root(rootfd, path, O_WRONLY | O_NOFOLLOW, RESOLVE_NO_SYMLINKS);
        if (fd < 0)
            ck_die(ctx, CK_STAGE_SYSCTL, errno, "open", path);
        if (fstatfs(fd, &fs) < 0 || fs.f_type != PROC_SUPER_MAGIC)
            ck_die(ctx, CK_STAGE_SYSCTL, EXDEV, "not a proc file:", path);
        if (write(fd, cfg->sysctls[i].value, len) != (ssize_t)len)
            ck_die(ctx, CK_STAGE_SYSCTL, errno, "write", path);
        close(fd);
    }
}

/* The host's /dev/null, opened before pivot_root and checked to be the 1:3 character device:
 * masks bind this node, never whatever the container's /dev holds under that name. */
static int open_devnull(struct ck_ctx *ctx)
{
    struct stat st;
    int fd = open("/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        ck_die(ctx, CK_STAGE_MASKED_PATHS, errno, "open", "/dev/null");
    if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
        ck_die(ctx, CK_STAGE_MASKED_PATHS, EXDEV, "the host's /dev/null is not the null device", NULL);
    return fd;
}

/* Masked paths: directories get an empty read-only tmpfs, files get /dev/null; missing ones
 * are skipped, as in the OCI runtime spec's maskedPaths. Resolved below rootfd. */
static void mask_paths(struct ck_ctx *ctx, int rootfd)
{
    const struct ck_spawn_config *cfg = ctx->cfg;
    char source[32];
    uint32_t i;
    int devnull;

    if (cfg->masked_count == 0)
        return;
    at_stage(ctx, CK_STAGE_MASKED_PATHS);
    devnull = open_devnull(ctx);
    fd_path(devnull, source);
    for (i = 0; i < cfg->masked_count; i++) {
        const char *p = cfg->masked_paths[i];
        struct stat st;
        char target[32];
        int fd = openat2_in_root(rootfd, p, O_PATH | O_NOFOLLOW, 0);
        int rc;
        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            ck_die(ctx, CK_STAGE_MASKED_PATHS, errno, "open", p);
        }
        if (fstat(fd, &st) < 0)
            ck_die(ctx, CK_STAGE_MASKED_PATHS, errno, "stat", p);
        fd_path(fd, target);
        if (S_ISDIR(st.st_mode))
            rc = mount("tmpfs", target, "tmpfs", MS_RDONLY, "size=0");
        else
            rc = mount(source, target, NULL, MS_BIND, NULL);
        if (rc < 0)
            ck_die(ctx, CK_STAGE_MASKED_PATHS, errno, "mask", p);
        close(fd);
    }
    close(devnull);
}

static void readonly_paths(struct ck_ctx *ctx, int rootfd)
{
    const struct ck_spawn_config *cfg = ctx->cfg;
    uint32_t i;
    at_stage(ctx, CK_STAGE_READONLY_PATHS);
    for (i = 0; i < cfg->readonly_count; i++) {
        const char *p = cfg->readonly_paths[i];
        char target[32];
        int fd = openat2_in_root(rootfd, p, O_PATH | O_NOFOLLOW, 0), after;
        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            ck_die(ctx, CK_STAGE_READONLY_PATHS, errno, "open", p);
        }
        fd_path(fd, target);
        if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0)
            ck_die(ctx, CK_STAGE_READONLY_PATHS, errno, "bind", p);
        close(fd);
        after = openat2_in_root(rootfd, p, O_PATH | O_NOFOLLOW, 0);
        if (after < 0 || set_mount_attrs(after, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 1) < 0)
            ck_die(ctx, CK_STAGE_READONLY_PATHS, errno, "make read-only", p);
        close(after);
    }
}

/* The terminal is allocated in the container's own devpts instance (so `tty` prints a path that
 * exists inside), and its master is handed to the parent over the sync socket, as runc's
 * console socket does. Returns the slave fd. */
static int open_terminal(struct ck_ctx *ctx)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr mh;
    struct iovec iov;
    struct cmsghdr *cm;
    struct ck_msg msg;
    int unlock = 0;
    int master, slave;

    at_stage(ctx, CK_STAGE_TERMINAL);
    master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        ck_die(ctx, CK_STAGE_TERMINAL, errno, "open", "/dev/pts/ptmx");
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        ck_die(ctx, CK_STAGE_TERMINAL, errno, "unlock", "pty");
    slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        ck_die(ctx, CK_STAGE_TERMINAL, errno, "open", "pty peer");
    if (fchown(slave, ctx->cfg->uid, (gid_t)-1) < 0)
        ck_die(ctx, CK_STAGE_TERMINAL, errno, "chown", "pty");
    /* The size is there before the program's first look at it. */
    if (ctx->cfg->terminal_rows > 0 && ctx->cfg->terminal_columns > 0) {
        struct winsize size;
        memset(&size, 0, sizeof(size));
        size.ws_row = ctx->cfg->terminal_rows;
        size.ws_col = ctx->cfg->terminal_columns;
        if (ioctl(slave, TIOCSWINSZ, &size) < 0)
            ck_die(ctx, CK_STAGE_TERMINAL, errno, "set the size of", "pty");
    }

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
    if (sendmsg(ctx->sock, &mh, MSG_NOSIGNAL) < 0)
        ck_die(ctx, CK_STAGE_TERMINAL, errno, "send", "pty master");
    close(master);
    return slave;
}

/* Moves *fd to `floor` or above, so that placing stdio cannot overwrite it. */
static void move_above(struct ck_ctx *ctx, int *fd, int floor, const char *what)
{
    int moved;
    if (*fd < 0 || *fd >= floor)
        return;
    moved = fcntl(*fd, F_DUPFD_CLOEXEC, floor);
    if (moved < 0)
        ck_die(ctx, CK_STAGE_STDIO, errno, "move", what);
    close(*fd);
    *fd = moved;
}

/* Puts the stdio fds (and extra fds) in place. Two passes, because a source may sit on a target
 * number: first everything moves above the highest target, then dup2 into place (dup2 clears
 * close-on-exec on the new descriptor). Then every other descriptor is closed, the sync socket
 * (close-on-exec: its EOF tells the parent about the execve) and the trampoline aside. */
static void place_fds(struct ck_ctx *ctx, int terminal_fd)
{
    const struct ck_spawn_config *cfg = ctx->cfg;
    int moved[3 + CK_MAX_EXTRA_FDS], keep[2];
    int floor = 3 + (int)cfg->extra_fd_count;
    uint32_t n = 3 + cfg->extra_fd_count, i;
    size_t kept = 0;
    unsigned next = (unsigned)floor;

    at_stage(ctx, CK_STAGE_STDIO);
    move_above(ctx, &ctx->sock, floor, "sync socket");
    move_above(ctx, &ctx->trampoline, floor, "exec trampoline");
    for (i = 0; i < n; i++) {
        int src = i < 3 ? (terminal_fd >= 0 ? terminal_fd : cfg->stdio[i]) : cfg->extra_fds[i - 3];
        moved[i] = fcntl(src, F_DUPFD_CLOEXEC, floor);
        if (moved[i] < 0)
            ck_die(ctx, CK_STAGE_STDIO, errno, "duplicate", "stdio");
    }
    for (i = 0; i < n; i++) {
        if (dup2(moved[i], (int)i) < 0)
            ck_die(ctx, CK_STAGE_STDIO, errno, "dup2", "stdio");
        close(moved[i]);
    }
    at_stage(ctx, CK_STAGE_CLOSE_FDS);
    add_fd(keep, &kept, ctx->sock);
    add_fd(keep, &kept, ctx->trampoline);
    for (i = 0; i < kept; i++) {
        if ((unsigned)keep[i] > next && close_fd_range(next, (unsigned)keep[i] - 1) < 0)
            ck_die(ctx, CK_STAGE_CLOSE_FDS, errno, "close_range", NULL);
        next = (unsigned)keep[i] + 1;
    }
    if (close_fd_range(next, ~0U) < 0)
        ck_die(ctx, CK_STAGE_CLOSE_FDS, errno, "close_range", NULL);
}

/* Enters the working directory through openat2 below "/" (the container's root by now): no
 * magic link (/proc/self/fd/N, CVE-2024-21626) and no ".." can put it outside, and getcwd must
 * agree that it is reachable from the root. */
static void enter_working_directory(struct ck_ctx *ctx)
{
    char cwd[4096];
    int root, fd;
    long n;

    at_stage(ctx, CK_STAGE_CHDIR);
    root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        ck_die(ctx, CK_STAGE_CHDIR, errno, "open", "/");
    fd = openat2_in_root(root, ctx->cfg->cwd, O_PATH | O_DIRECTORY, 0);
    if (fd < 0)
        ck_die(ctx, CK_STAGE_CHDIR, errno, "chdir", ctx->cfg->cwd);
    if (fchdir(fd) < 0)
        ck_die(ctx, CK_STAGE_CHDIR, errno, "chdir", ctx->cfg->cwd);
    close(fd);
    close(root);
    n = syscall(SYS_getcwd, cwd, sizeof(cwd));
    if (n <= 0 || cwd[0] != '/')
        ck_die(ctx, CK_STAGE_CHDIR, EXDEV, "working directory is outside the root:", ctx->cfg->cwd);
}

/* Finds the program as execvp would, but inside the root and without executing anything: each
 * candidate is opened below the root (no magic links) and must be a regular file with an
 * execute bit, so exactly one execve follows, with no failing execve per PATH entry to widen
 * the time in which this process still holds host state. A name with a slash is checked the
 * same way. Returns the path to execute, in `out` when searched. */
static const char *find_program(struct ck_ctx *ctx, char *out, size_t size)
{
    const struct ck_spawn_config *cfg = ctx->cfg;
    const char *prog = cfg->argv[0];
    const char *p = cfg->path != NULL ? cfg->path : "";
    char quoted[300] = "\"";
    int root, err = ENOENT;
    struct stat st;

    at_stage(ctx, CK_STAGE_EXEC);
    ck_strlcat(quoted, prog, sizeof(quoted));
    ck_strlcat(quoted, "\"", sizeof(quoted));
    root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        ck_die(ctx, CK_STAGE_EXEC, errno, "open", "/");
    if (strchr(prog, '/') != NULL) {
        int fd = openat2_in_root(prog[0] == '/' ? root : AT_FDCWD, prog, O_PATH, 0);
        if (fd < 0)
            ck_die(ctx, CK_STAGE_EXEC, errno, "exec", quoted);
        if (fstat(fd, &st) < 0)
            ck_die(ctx, CK_STAGE_EXEC, errno, "exec", quoted);
        if (S_ISDIR(st.st_mode))
            ck_die(ctx, CK_STAGE_EXEC, EACCES, "exec", quoted);
        close(fd);
        close(root);
        return prog;
    }
    for (;;) {
        const char *colon = strchr(p, ':');
        size_t dlen = colon != NULL ? (size_t)(colon - p) : strlen(p);
        if (dlen + strlen(prog) + 3 < size) {
            int fd;
            memcpy(out, p, dlen);
            out[dlen] = '\0';
            if (dlen == 0)
                ck_strlcat(out, ".", size);
            ck_strlcat(out, "/", size);
            ck_strlcat(out, prog, size);
            /* Relative entries are relative to the working directory, still below the root. */
            fd = openat2_in_root(out[0] == '/' ? root : AT_FDCWD, out, O_PATH, 0);
            if (fd >= 0) {
                int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
                close(fd);
                if (ok && (st.st_mode & 0111)) {
                    close(root);
                    return out;
                }
                if (ok)
                    err = EACCES; /* found, not executable: execvp's answer when nothing else is */
            } else if (errno == EACCES) {
                err = EACCES;
            }
        }
        if (colon == NULL)
            break;
        p = colon + 1;
    }
    if (err == ENOENT)
        ck_strlcat(quoted, ": executable file not found in $PATH", sizeof(quoted));
    ck_die(ctx, CK_STAGE_EXEC, err, "exec", quoted);
}

static void set_capabilities(struct ck_ctx *ctx)
{
    const struct ck_spawn_config *cfg = ctx->cfg;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    uint32_t cap;

    at_stage(ctx, CK_STAGE_CAPABILITIES);
    data[0].effective = (uint32_t)cfg->cap_effective;
    data[1].effective = (uint32_t)(cfg->cap_effective >> 32);
    data[0].permitted = (uint32_t)cfg->cap_permitted;
    data[1].permitted = (uint32_t)(cfg->cap_permitted >> 32);
    data[0].inheritable = (uint32_t)cfg->cap_inheritable;
    data[1].inheritable = (uint32_t)(cfg->cap_inheritable >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0)
        ck_die(ctx, CK_STAGE_CAPABILITIES, errno, "capset", NULL);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        ck_die(ctx, CK_STAGE_CAPABILITIES, errno, "clear ambient capabilities", NULL);
    for (cap = 0; cap <= cfg->cap_last && cap < 64; cap++)
        if ((cfg->cap_ambient >> cap) & 1)
            if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                ck_die(ctx, CK_STAGE_CAPABILITIES, errno, "raise ambient capability", NULL);
}

static void load_seccomp(struct ck_ctx *ctx)
{
    const struct ck_spawn_config *cfg = ctx->cfg;
    struct sock_fprog prog;
    if (cfg->seccomp_filter == NULL)
        return;
    at_stage(ctx, CK_STAGE_SECCOMP);
    prog.len = (unsigned short)cfg->seccomp_len;
    prog.filter = (struct sock_filter *)(uintptr_t)cfg->seccomp_filter;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, cfg->seccomp_flags, &prog) < 0)
        ck_die(ctx, CK_STAGE_SECCOMP, errno, "load seccomp filter", NULL);
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

__attribute__((noreturn)) void ck_child(struct ck_ctx *ctx, int joined)
{
    const struct ck_spawn_config *cfg = ctx->cfg;
    struct ck_msg msg;
    sigset_t none;
    ssize_t n;
    uint32_t i;
    int terminal_fd = -1;
    char program_path[4096];
    const char *program;

    /* Nothing of the host's descriptors may be reachable once this process is visible in the
     * container's namespaces: close, not merely mark, what the config does not name. (The
     * address space is already non-dumpable: ck_spawn cloned us from a non-dumpable one.) */
    at_stage(ctx, CK_STAGE_CLOSE_FDS);
    if (ck_close_unneeded_fds(ctx) < 0)
        ck_die(ctx, CK_STAGE_CLOSE_FDS, errno, "close_range", NULL);

    /* Handlers installed by the host (Swift runtime, SIGPIPE ignored by servers) must not reach
     * the container: reset every disposition while all signals are still blocked (the parent
     * blocked them around clone). SIG_IGN would otherwise survive execve. */
    at_stage(ctx, CK_STAGE_HANDSHAKE);
    ck_reset_signal_dispositions();
    if (cfg->pdeath_signal != 0 && prctl(PR_SET_PDEATHSIG, cfg->pdeath_signal, 0, 0, 0) < 0)
        ck_die(ctx, CK_STAGE_HANDSHAKE, errno, "prctl(PR_SET_PDEATHSIG)", NULL);

    /* Wait for the parent: it writes uid/gid maps, rlimits and cgroup membership (v1) before
     * we may do anything that depends on them. EOF means the parent is gone. */
    do {
        n = recv(ctx->sock, &msg, sizeof(msg), 0);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(msg) || msg.type != CK_MSG_CONTINUE)
        _exit(CK_EXIT_INIT_FAILED);

    /* Join namespaces (not pid: that needs a second clone, done in ck_spawn). The user
     * namespace comes first so the others are joined with its privileges. */
    at_stage(ctx, CK_STAGE_SETNS);
    if (!joined)
        for (i = 0; i < cfg->join_count; i++)
            if (setns(cfg->join[i].fd, cfg->join[i].type) < 0)
                ck_die(ctx, CK_STAGE_SETNS, errno, "setns", ck_ns_name(cfg->join[i].type));
    for (i = 0; i < cfg->join_count; i++)
        close(cfg->join[i].fd);

    /* In a new user namespace our ids are still the host's, which the namespace does not map:
     * become its root first, or every file we create (mount points, devices) fails with
     * EOVERFLOW. The maps were written by the parent before CONTINUE. */
    if (cfg->clone_flags & CLONE_NEWUSER) {
        if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
            ck_die(ctx, CK_STAGE_IDENTITY, errno, "become root in the user namespace", NULL);
    }

    /* The cgroup namespace is made here, not at clone: the parent has placed us in our cgroup
     * by now, so the namespace is rooted there and /proc/self/cgroup reads "0::/". */
    if ((cfg->clone_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0)
        ck_die(ctx, CK_STAGE_SETNS, errno, "unshare", "cgroup namespace");

    at_stage(ctx, CK_STAGE_SETSID);
    if (setsid() < 0)
        ck_die(ctx, CK_STAGE_SETSID, errno, "setsid", NULL);
    /* Modes of created mount points and devices must not depend on the host's umask. */
    umask(0);

    if (cfg->clone_flags & CLONE_NEWNS) {
        /* Nothing we mount may propagate back to the host: make the copied tree a slave (or
         * what was asked) before the first mount. */
        at_stage(ctx, CK_STAGE_PROPAGATION);
        if (mount(NULL, "/", NULL, cfg->rootfs_propagation, NULL) < 0)
            ck_die(ctx, CK_STAGE_PROPAGATION, errno, "make / private/slave", NULL);
    }
    if (cfg->rootfs != NULL) {
        char root_name[4096], link[32];
        ssize_t len;
        int rootfd;
        /* pivot_root needs the new root to be a mount point: bind it onto itself, then open
         * the result (the old fd would still name the directory under the mount). */
        at_stage(ctx, CK_STAGE_ROOTFS);
        if (mount(cfg->rootfs, cfg->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
            ck_die(ctx, CK_STAGE_ROOTFS, errno, "bind rootfs", cfg->rootfs);
        rootfd = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
            ck_die(ctx, CK_STAGE_ROOTFS, errno, "open rootfs", cfg->rootfs);
        fd_path(rootfd, link);
        len = readlink(link, root_name, sizeof(root_name) - 1);
        if (len <= 0)
            ck_die(ctx, CK_STAGE_ROOTFS, errno, "name rootfs", cfg->rootfs);
        root_name[len] = '\0';
        if (strcmp(root_name, "/") == 0)
            root_name[0] = '\0';

        at_stage(ctx, CK_STAGE_MOUNT);
        for (i = 0; i < cfg->mount_count; i++)
            do_mount(ctx, rootfd, root_name, &cfg->mounts[i]);
        at_stage(ctx, CK_STAGE_DEVICES);
        create_devices(ctx, rootfd);
        /* Sysctls, masks and read-only paths while the host's /dev/null can still be opened,
         * each resolved below the root; sysctls first, /proc/sys goes read-only after them
         * (runc's standard_init_linux.go uses the same order). */
        write_sysctls(ctx, rootfd);
        mask_paths(ctx, rootfd);
        readonly_paths(ctx, rootfd);
        pivot_into(ctx, rootfd);
        close(rootfd);
        if (cfg->rootfs_readonly) {
            struct mount_attr attr;
            at_stage(ctx, CK_STAGE_READONLY_ROOT);
            memset(&attr, 0, sizeof(attr));
            attr.attr_set = MOUNT_ATTR_RDONLY;
            if (syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, &attr, sizeof(attr)) < 0)
                ck_die(ctx, CK_STAGE_READONLY_ROOT, errno, "remount / read-only", NULL);
        }
    } else if (cfg->sysctl_count > 0) {
        int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
            ck_die(ctx, CK_STAGE_SYSCTL, errno, "open", "/");
        write_sysctls(ctx, root);
        close(root);
    }

    at_stage(ctx, CK_STAGE_HOSTNAME);
    if (cfg->hostname != NULL && sethostname(cfg->hostname, strlen(cfg->hostname)) < 0)
        ck_die(ctx, CK_STAGE_HOSTNAME, errno, "sethostname", cfg->hostname);
    if (cfg->domainname != NULL && setdomainname(cfg->domainname, strlen(cfg->domainname)) < 0)
        ck_die(ctx, CK_STAGE_HOSTNAME, errno, "setdomainname", cfg->domainname);

    /* The terminal comes after pivot_root so it lives in the container's devpts. */
    if (cfg->terminal)
        terminal_fd = open_terminal(ctx);
    /* The terminal's own descriptor is gone after this: a copy of it is 0, 1 and 2. */
    place_fds(ctx, terminal_fd);
    if (terminal_fd >= 0) {
        if (ioctl(0, TIOCSCTTY, 0) < 0)
            ck_die(ctx, CK_STAGE_TERMINAL, errno, "make controlling terminal", NULL);
    }

    if (cfg->cwd != NULL)
        enter_working_directory(ctx);
    /* With the container's privileges still whole, as runc's LookPath before it drops them. */
    program = find_program(ctx, program_path, sizeof(program_path));

    /* Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: load it while we still
     * have every capability. With no_new_privs it goes last, so the filter need not allow
     * the setup calls below (runc orders it the same way). */
    if (!cfg->no_new_privs)
        load_seccomp(ctx);

    /* Capabilities in two phases around the identity change: the bounding set shrinks and
     * keep-caps holds the permitted set across setresuid; the final sets come after. */
    at_stage(ctx, CK_STAGE_CAPABILITIES);
    for (i = 0; i <= cfg->cap_last && i < 64; i++)
        if (!((cfg->cap_bounding >> i) & 1) && prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0)
            ck_die(ctx, CK_STAGE_CAPABILITIES, errno, "drop from bounding set", NULL);
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        ck_die(ctx, CK_STAGE_CAPABILITIES, errno, "prctl(PR_SET_KEEPCAPS)", NULL);

    /* Raw syscalls: glibc's wrappers would try to synchronise threads that do not exist here. */
    at_stage(ctx, CK_STAGE_IDENTITY);
    if (syscall(SYS_setgroups, (size_t)cfg->group_count, cfg->groups) < 0)
        ck_die(ctx, CK_STAGE_IDENTITY, errno, "setgroups", NULL);
    if (syscall(SYS_setresgid, cfg->gid, cfg->gid, cfg->gid) < 0)
        ck_die(ctx, CK_STAGE_IDENTITY, errno, "setresgid", NULL);
    if (syscall(SYS_setresuid, cfg->uid, cfg->uid, cfg->uid) < 0)
        ck_die(ctx, CK_STAGE_IDENTITY, errno, "setresuid", NULL);
    set_capabilities(ctx);

    /* A credential change clears the parent-death signal: arm it again. */
    if (cfg->pdeath_signal != 0 && prctl(PR_SET_PDEATHSIG, cfg->pdeath_signal, 0, 0, 0) < 0)
        ck_die(ctx, CK_STAGE_HANDSHAKE, errno, "prctl(PR_SET_PDEATHSIG)", NULL);

    if (cfg->umask >= 0)
        umask((mode_t)cfg->umask);
    if (cfg->no_new_privs) {
        at_stage(ctx, CK_STAGE_NO_NEW_PRIVS);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            ck_die(ctx, CK_STAGE_NO_NEW_PRIVS, errno, "prctl(PR_SET_NO_NEW_PRIVS)", NULL);
        load_seccomp(ctx);
    }

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    at_stage(ctx, CK_STAGE_EXEC);
    if (ctx->trampoline >= 0) {
        /* argv for "berth-supervisor --exec PROGRAM ARGV...", on this stack. */
        const char *targv[CK_MAX_TRAMPOLINE_ARGS + 4];
        uint32_t argc = 0;
        while (cfg->argv[argc] != NULL)
            if (++argc > CK_MAX_TRAMPOLINE_ARGS)
                ck_die(ctx, CK_STAGE_EXEC, E2BIG, "more arguments than the exec trampoline takes", NULL);
        targv[0] = "berth-supervisor";
        targv[1] = "--exec";
        targv[2] = program;
        for (i = 0; i <= argc; i++)
            targv[3 + i] = cfg->argv[i];
        /* The last store before execve: EOF on the sync socket without it means init died. */
        __atomic_store_n(&ctx->status->exec, 1, __ATOMIC_RELEASE);
        syscall(SYS_execveat, ctx->trampoline, "", targv, cfg->envp, AT_EMPTY_PATH);
        /* A seccomp profile that allows execve but not execveat answers ENOSYS or EPERM
         * (Docker's allows both): run the program directly rather than not at all. */
        if (errno == ENOSYS || errno == EPERM)
            execve(program, (char *const *)cfg->argv, (char *const *)cfg->envp);
    } else {
        __atomic_store_n(&ctx->status->exec, 1, __ATOMIC_RELEASE);
        execve(program, (char *const *)cfg->argv, (char *const *)cfg->envp);
    }
    {
        char quoted[300] = "\"";
        ck_strlcat(quoted, cfg->argv[0], sizeof(quoted));
        ck_strlcat(quoted, "\"", sizeof(quoted));
        ck_die(ctx, CK_STAGE_EXEC, errno, "exec", quoted);
    }
}
