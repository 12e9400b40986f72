/* Host-side system call wrappers; see ck_syscalls.h. */
#define _GNU_SOURCE
#include "include/ck_syscalls.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <unistd.h>

#ifndef STATX_MNT_ID /* Linux 5.8 */
#define STATX_MNT_ID 0x00001000U
#endif
#ifndef P_PIDFD /* Linux 5.4 */
#define P_PIDFD 3
#endif
/* Numbers from 424 on are the same on every architecture (the kernel's unified table). */
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424 /* Linux 5.1 */
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429 /* Linux 5.2, with fsopen, fsconfig and fsmount */
#define SYS_fsopen 430
#define SYS_fsconfig 431
#define SYS_fsmount 432
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* Linux 5.3 */
#endif
#ifndef SYS_openat2
#define SYS_openat2 437 /* Linux 5.6 */
#endif
#ifndef SYS_clone3
#define SYS_clone3 435 /* Linux 5.3 */
#endif
#ifndef SYS_close_range
#define SYS_close_range 436 /* Linux 5.9 */
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442 /* Linux 5.12 */
#endif
/* <linux/mount.h> (its enum clashes with glibc 2.36's <sys/mount.h>, so the values). */
#define CK_FSOPEN_CLOEXEC 0x1
#define CK_FSCONFIG_SET_STRING 1
#define CK_FSCONFIG_CMD_CREATE 6
#define CK_FSMOUNT_CLOEXEC 0x1
#define CK_MOVE_MOUNT_F_EMPTY_PATH 0x4

/* ---- descriptors and processes ---- */

int ck_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

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

int ck_prlimit(pid_t pid, int resource, uint64_t soft, uint64_t hard)
{
    struct rlimit64 lim = {soft, hard};
    return prlimit64(pid, (__rlimit_resource_t)resource, &lim, NULL);
}

int ck_get_dumpable(void) { return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); }

int ck_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }

/* ---- epoll ---- */

static int ctl(int epfd, int op, int fd, uint32_t events, uint64_t token)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = token;
    return epoll_ctl(epfd, op, fd, &ev);
}

int ck_epoll_add(int epfd, int fd, uint32_t events, uint64_t token) { return ctl(epfd, EPOLL_CTL_ADD, fd, events, token); }
int ck_epoll_mod(int epfd, int fd, uint32_t events, uint64_t token) { return ctl(epfd, EPOLL_CTL_MOD, fd, events, token); }
int ck_epoll_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int ck_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms)
{
    struct epoll_event evs[64];
    int i, n;
    if (max > 64)
        max = 64;
    n = epoll_wait(epfd, evs, max, timeout_ms);
    for (i = 0; i < n; i++) {
        tokens[i] = evs[i].data.u64;
        events[i] = evs[i].events;
    }
    return n;
}

int ck_set_winsize(int fd, uint16_t rows, uint16_t cols)
{
    struct winsize ws;
    memset(&ws, 0, sizeof(ws));
    ws.ws_row = rows;
    ws.ws_col = cols;
    return ioctl(fd, TIOCSWINSZ, &ws);
}

/* ---- paths ---- */

int ck_openat2(int dirfd, const char *path, int flags, uint32_t mode, uint64_t resolve)
{
    struct open_how how;
    int fd, tries = 0;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)(uint32_t)(flags | O_CLOEXEC);
    how.mode = mode;
    how.resolve = resolve;
    do {
        fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    } while (fd < 0 && (errno == EAGAIN || errno == EINTR) && ++tries < 128);
    return fd;
}

int ck_fs_type(int fd, uint64_t *type)
{
    struct statfs st;
    if (fstatfs(fd, &st) < 0)
        return -1;
    *type = (uint64_t)(unsigned long)st.f_type;
    return 0;
}

int ck_mount_id(int dirfd, const char *name, uint64_t *mnt_id)
{
    struct statx st;
    int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | (name[0] == '\0' ? AT_EMPTY_PATH : 0);
    memset(&st, 0, sizeof(st));
    if (statx(dirfd, name, flags, STATX_MNT_ID, &st) < 0)
        return -1;
    if (!(st.stx_mask & STATX_MNT_ID)) {
        errno = EOPNOTSUPP;
        return -1;
    }
    *mnt_id = st.stx_mnt_id;
    return 0;
}

ssize_t ck_copy_file_range(int in_fd, int out_fd, size_t length)
{
    return copy_file_range(in_fd, NULL, out_fd, NULL, length, 0);
}

int ck_exchange(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, 1 << 1 /* RENAME_EXCHANGE */);
}

/* ---- the new mount API ---- */

int ck_fsopen(const char *fs_name) { return (int)syscall(SYS_fsopen, fs_name, CK_FSOPEN_CLOEXEC); }

int ck_fsconfig_string(int fs_fd, const char *key, const char *value)
{
    return (int)syscall(SYS_fsconfig, fs_fd, CK_FSCONFIG_SET_STRING, key, value, 0);
}

int ck_fsconfig_create(int fs_fd) { return (int)syscall(SYS_fsconfig, fs_fd, CK_FSCONFIG_CMD_CREATE, NULL, NULL, 0); }

int ck_fsmount(int fs_fd) { return (int)syscall(SYS_fsmount, fs_fd, CK_FSMOUNT_CLOEXEC, 0); }

int ck_move_mount(int mount_fd, int to_dirfd, const char *to_path)
{
    return (int)syscall(SYS_move_mount, mount_fd, "", to_dirfd, to_path, CK_MOVE_MOUNT_F_EMPTY_PATH);
}

/* ---- extended attributes ---- */

int ck_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)
{
    return fsetxattr(fd, name, value, size, flags);
}

int ck_lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
    return lsetxattr(path, name, value, size, flags);
}

int ck_fremovexattr(int fd, const char *name) { return fremovexattr(fd, name); }

ssize_t ck_fgetxattr(int fd, const char *name, void *value, size_t size) { return fgetxattr(fd, name, value, size); }

ssize_t ck_lgetxattr(const char *path, const char *name, void *value, size_t size)
{
    return lgetxattr(path, name, value, size);
}

ssize_t ck_flistxattr(int fd, char *list, size_t size) { return flistxattr(fd, list, size); }

ssize_t ck_llistxattr(const char *path, char *list, size_t size) { return llistxattr(path, list, size); }

/* ---- what the kernel provides ---- */

int ck_feature_errno(int feature)
{
    long rc;
    errno = 0;
    switch (feature) {
    case CK_FEATURE_OPENAT2: rc = syscall(SYS_openat2, -1, NULL, NULL, 0); break;          /* EINVAL: size 0 */
    case CK_FEATURE_CLONE3: rc = syscall(SYS_clone3, NULL, 0); break;                      /* EINVAL: size 0 */
    case CK_FEATURE_CLOSE_RANGE: rc = syscall(SYS_close_range, 1U, 0U, 0U); break;         /* EINVAL: first > last */
    case CK_FEATURE_PIDFD_OPEN: rc = syscall(SYS_pidfd_open, 0, 0U); break;                /* EINVAL: pid 0 */
    case CK_FEATURE_PIDFD_SEND_SIGNAL: rc = syscall(SYS_pidfd_send_signal, -1, 0, NULL, 0U); break; /* EBADF */
    case CK_FEATURE_MOUNT_SETATTR: rc = syscall(SYS_mount_setattr, -1, NULL, 0U, NULL, 0); break;   /* EINVAL */
    case CK_FEATURE_FSOPEN: rc = syscall(SYS_fsopen, NULL, 0U); break;                     /* EFAULT */
    case CK_FEATURE_EXECVEAT: rc = syscall(SYS_execveat, -1, "", NULL, NULL, 0); break;    /* ENOENT or EBADF */
    case CK_FEATURE_MEMFD_CREATE: rc = syscall(SYS_memfd_create, NULL, 0U); break;         /* EFAULT */
    default: return EINVAL;
    }
    return rc < 0 ? errno : 0;
}
