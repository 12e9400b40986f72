/*
 * Host-side system call wrappers for ContainerKernel and Layers (never run in a cloned child:
 * the child path has its own raw calls in CChildPath).
 *
 * Why C: glibc 2.36 (Debian 12) has no wrapper for openat2, pidfd_send_signal or waitid on a
 * pidfd, and older glibcs none for the new mount API; syscall(2) is variadic, which Swift cannot
 * call; Swift's Glibc module is not built with _GNU_SOURCE (so pipe2, copy_file_range,
 * pthread_setname_np, O_PATH are invisible) and leaves out <sys/xattr.h>, <sys/statfs.h> and
 * <sys/statx.h>; struct epoll_event is packed and ioctl and prctl are variadic.
 *
 * Every function behaves like a libc wrapper: it returns -1 (or a size, a count, an fd) and sets
 * errno on failure, so Swift routes it through its sys() helper. Raw syscall numbers live here
 * and in CChildPath only.
 */
#ifndef CK_SYSCALLS_H
#define CK_SYSCALLS_H

#include <linux/openat2.h> /* RESOLVE_* for ck_openat2 */
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h> /* eventfd for Swift: Glibc leaves it out */
#include <sys/types.h>

/* Flags glibc declares only with _GNU_SOURCE, by value (the same on x86_64 and aarch64). */
#define CK_O_PATH 0x200000        /* O_PATH, Linux 2.6.39: open a file only to name it */
#define CK_F_SETPIPE_SZ 1031      /* F_SETPIPE_SZ, Linux 2.6.35 */

/* ---- descriptors and processes ---- */

/* pipe2(O_CLOEXEC): atomic, so no concurrent fork inherits a half-set-up pipe. */
int ck_pipe_cloexec(int fds[2]);

/* pidfd_open(2) (Linux 5.3): a close-on-exec pidfd for `pid`. */
int ck_pidfd_open(pid_t pid);
/* pidfd_send_signal(2) (Linux 5.1). */
int ck_pidfd_send_signal(int pidfd, int sig);
/* waitid(P_PIDFD) (Linux 5.4): returns the pid (0 with WNOHANG and nothing to report) and the
 * si_code and si_status of the change. */
int ck_waitid_pidfd(int pidfd, int options, int *code, int *status);

/* prlimit(2) on another process (never setrlimit in the host process). */
int ck_prlimit(pid_t pid, int resource, uint64_t soft, uint64_t hard);
/* prctl(PR_GET_DUMPABLE). */
int ck_get_dumpable(void);
/* pthread_setname_np on the calling thread. */
int ck_set_thread_name(const char *name);

/* ---- epoll (struct epoll_event is packed on x86_64) ---- */

int ck_epoll_add(int epfd, int fd, uint32_t events, uint64_t token);
int ck_epoll_mod(int epfd, int fd, uint32_t events, uint64_t token);
int ck_epoll_del(int epfd, int fd);
/* Waits for up to `max` (at most 64) events; fills tokens[i] and events[i]. Returns the count. */
int ck_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);

/* TIOCSWINSZ. */
int ck_set_winsize(int fd, uint16_t rows, uint16_t cols);

/* ---- paths ---- */

/* openat2(2) (Linux 5.6) with O_CLOEXEC added to `flags` and `resolve` (RESOLVE_IN_ROOT,
 * RESOLVE_NO_MAGICLINKS, ...). EAGAIN is retried a bounded number of times: with
 * RESOLVE_IN_ROOT the kernel gives up on a ".." when a rename or a mount anywhere on the system
 * raced with the lookup, and openat2(2) says to retry; bounded, so that a machine busy with
 * mounts fails the lookup instead of spinning. */
int ck_openat2(int dirfd, const char *path, int flags, uint32_t mode, uint64_t resolve);

/* fstatfs(2): the file system's magic number (f_type, <linux/magic.h>) in *type. */
int ck_fs_type(int fd, uint64_t *type);

/* statx(2) with STATX_MNT_ID (Linux 5.8) of `name` in `dirfd`, not following a final symlink
 * ("" with AT_EMPTY_PATH: dirfd itself): the id of the mount the file is on, in *mnt_id. Unlike
 * st_dev it tells a bind mount of the same file system apart, and it is the same for every file
 * of an overlay whose layers sit on several file systems. -1 with ENOSYS or EOPNOTSUPP when the
 * kernel does not report it. */
int ck_mount_id(int dirfd, const char *name, uint64_t *mnt_id);

/* copy_file_range(2) from the current offsets (Linux 4.5; across file systems 5.3). */
ssize_t ck_copy_file_range(int in_fd, int out_fd, size_t length);

/* renameat2(2) with RENAME_EXCHANGE (Linux 3.15): swaps two paths at once, which must both
 * exist, on one file system. */
int ck_exchange(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);

/* ---- the new mount API (Linux 5.2), all close-on-exec ---- */

/* fsopen(2). */
int ck_fsopen(const char *fs_name);
/* fsconfig(FSCONFIG_SET_STRING). */
int ck_fsconfig_string(int fs_fd, const char *key, const char *value);
/* fsconfig(FSCONFIG_CMD_CREATE). */
int ck_fsconfig_create(int fs_fd);
/* fsmount(2) without mount attributes. */
int ck_fsmount(int fs_fd);
/* move_mount(2) of a detached mount onto `to_path` (relative to `to_dirfd`). */
int ck_move_mount(int mount_fd, int to_dirfd, const char *to_path);

/* ---- extended attributes (<sys/xattr.h>) ---- */

int ck_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags);
int ck_lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags);
int ck_fremovexattr(int fd, const char *name);
ssize_t ck_fgetxattr(int fd, const char *name, void *value, size_t size);
ssize_t ck_lgetxattr(const char *path, const char *name, void *value, size_t size);
ssize_t ck_flistxattr(int fd, char *list, size_t size);
ssize_t ck_llistxattr(const char *path, char *list, size_t size);

/* ---- what the kernel provides ---- */

/* The system calls Berth probes for before relying on them (ck_feature_errno). */
enum ck_feature {
    CK_FEATURE_OPENAT2,
    CK_FEATURE_CLONE3,
    CK_FEATURE_CLOSE_RANGE,
    CK_FEATURE_PIDFD_OPEN,
    CK_FEATURE_PIDFD_SEND_SIGNAL,
    CK_FEATURE_MOUNT_SETATTR,
    CK_FEATURE_FSOPEN,
    CK_FEATURE_EXECVEAT,
    CK_FEATURE_MEMFD_CREATE,
};
/* Calls the feature's system call with arguments that every kernel that has it refuses (a size
 * of 0, a descriptor of -1, a null pointer), so it never has an effect, and returns the errno:
 * ENOSYS when the kernel lacks the call, ENOSYS or EPERM when a seccomp filter around this
 * process refuses it, anything else when it is there. */
int ck_feature_errno(int feature);

#endif
