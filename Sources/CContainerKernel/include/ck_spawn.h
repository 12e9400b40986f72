/*
 * Berth's C kernel shim: everything a container's init does between clone and execve.
 *
 * Why C: after clone() in a multi-threaded Swift process, the child owns a copy of every lock
 * the other threads held (malloc, stdio, the Swift runtime), so it may run only
 * async-signal-safe code. The Swift side (ContainerKernel) prepares one flat, validated
 * ck_spawn_config in the parent: C strings, the mount table, capability masks, the seccomp BPF
 * program compiled by libseccomp, file descriptors. The child only reads it, uses raw system
 * calls and fixed stack buffers, and leaves through execve or _exit.
 *
 * Protocol on the SOCK_SEQPACKET sync socket (close-on-exec in the child):
 *   parent -> child  CK_MSG_CONTINUE   after uid/gid maps, rlimits and cgroup membership
 *   child -> parent  CK_MSG_PTY        the pseudo-terminal master, as SCM_RIGHTS
 *   child -> parent  CK_MSG_FAILURE    {stage, errno, detail}, then the child _exits
 *   child -> parent  CK_MSG_PID        (joining a pid namespace, or supervised) the grandchild's pid
 *   EOF                                execve succeeded (the socket was close-on-exec)
 */
#ifndef CK_SPAWN_H
#define CK_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

/* The init stages, reported with a failure. Keep in sync with InitStage in Swift. */
enum ck_stage {
    CK_STAGE_HANDSHAKE = 1,
    CK_STAGE_SETNS,
    CK_STAGE_STDIO,
    CK_STAGE_SETSID,
    CK_STAGE_PROPAGATION,
    CK_STAGE_ROOTFS,
    CK_STAGE_MOUNT,
    CK_STAGE_DEVICES,
    CK_STAGE_PIVOT_ROOT,
    CK_STAGE_READONLY_ROOT,
    CK_STAGE_HOSTNAME,
    CK_STAGE_SYSCTL,
    CK_STAGE_MASKED_PATHS,
    CK_STAGE_READONLY_PATHS,
    CK_STAGE_TERMINAL,
    CK_STAGE_CHDIR,
    CK_STAGE_UMASK,
    CK_STAGE_CLOSE_FDS,
    CK_STAGE_CAPABILITIES,
    CK_STAGE_IDENTITY,
    CK_STAGE_NO_NEW_PRIVS,
    CK_STAGE_SECCOMP,
    CK_STAGE_EXEC,
    CK_STAGE_CLONE,
    CK_STAGE_SUPERVISOR,
};

/* Upper bound for the descriptors handed to a supervisor (stdout, stderr, a few more). */
#define CK_MAX_SUPERVISOR_FDS 8

enum ck_mount_kind {
    CK_MOUNT_FS = 0, /* a new filesystem: source + fstype + data (proc, tmpfs, sysfs, devpts, mqueue, cgroup2) */
    CK_MOUNT_BIND,   /* a bind mount of a host path (source) */
};

/* One entry of the mount table, applied in order, target resolved inside the rootfs. */
struct ck_mount {
    const char *source;
    const char *target;     /* absolute inside the container */
    const char *fstype;     /* CK_MOUNT_FS only */
    const char *data;       /* CK_MOUNT_FS only: mount options for the filesystem */
    uint32_t kind;          /* enum ck_mount_kind */
    uint32_t flags;         /* MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY | MS_REC (bind) ... */
    uint32_t propagation;   /* 0, or MS_PRIVATE/MS_SLAVE/MS_SHARED/MS_UNBINDABLE (| MS_REC) */
    uint32_t target_is_file;/* create the target as an empty file (binding a file) */
    uint32_t sysfs_fallback;/* sysfs refused (no own netns in a userns): bind the host's /sys */
};

/* A namespace to join: an open nsfs file descriptor and its CLONE_NEW* type. */
struct ck_namespace {
    int fd;
    int type;
};

/* A device node to create in the container's /dev (bind-mounted from the host's where mknod is refused). */
struct ck_device {
    const char *path;      /* inside the container, e.g. "/dev/null" */
    uint32_t mode;         /* S_IFCHR | 0666 */
    uint32_t major, minor;
    uint32_t uid, gid;
};

/* A sysctl to write: path under /proc/sys ("net/ipv4/ip_forward") and value. */
struct ck_sysctl {
    const char *key;
    const char *value;
};

struct ck_spawn_config {
    /* Namespaces. */
    uint64_t clone_flags;            /* CLONE_NEW* to create */
    const struct ck_namespace *join; /* to join with setns, user namespace first */
    uint32_t join_count;
    int join_pid_fd;                 /* a pid namespace to join (-1: none); needs a second clone */

    /* Root filesystem (rootfs NULL: stay in the current root; only the mount table applies). */
    const char *rootfs;
    uint32_t rootfs_propagation;     /* for "/" before anything is mounted: MS_SLAVE | MS_REC by default */
    uint32_t rootfs_readonly;
    const struct ck_mount *mounts;
    uint32_t mount_count;
    const struct ck_device *devices; /* created after the mount table, when /dev is ours */
    uint32_t device_count;
    uint32_t dev_symlinks;           /* /dev/fd, stdin, stdout, stderr, ptmx */
    const char *const *masked_paths;
    uint32_t masked_count;
    const char *const *readonly_paths;
    uint32_t readonly_count;

    /* UTS, sysctls. */
    const char *hostname;            /* NULL: leave */
    const char *domainname;
    const struct ck_sysctl *sysctls;
    uint32_t sysctl_count;

    /* The process. */
    const char *const *argv;         /* argv[0] is the program; without '/' it is searched in PATH */
    const char *const *envp;
    const char *path;                /* the PATH to search (from envp or the default) */
    const char *cwd;
    uint32_t uid, gid;
    const uint32_t *groups;
    uint32_t group_count;
    int32_t umask;                   /* -1: leave */
    uint32_t no_new_privs;
    uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    uint32_t cap_last;               /* highest capability number the kernel knows */
    const void *seccomp_filter;      /* struct sock_filter[], NULL: none */
    uint32_t seccomp_len;            /* number of instructions */
    uint32_t seccomp_flags;          /* SECCOMP_FILTER_FLAG_* */

    /* Stdio: fds of the parent to become 0, 1, 2; or allocate a terminal in the container. */
    int stdio[3];
    uint32_t terminal;               /* open a pty in the container's devpts and send the master back */
    const int *extra_fds;            /* passed on as 3, 4, ... (socket activation) */
    uint32_t extra_fd_count;

    int pdeath_signal;               /* 0: none */

    /* Supervised (detached) spawn: a fork of the caller, which outlives it, clones the child and
     * then execs supervisor_path. The child is the supervisor's child, so the supervisor reaps it
     * and records how it ended when the caller is long gone. NULL: the caller is the parent. */
    const char *supervisor_path;
    const char *const *supervisor_argv;
    const int *supervisor_fds;       /* become 3, 4, ... in the supervisor (the child's stdio pipes) */
    uint32_t supervisor_fd_count;
};

/* What the parent gets back from ck_spawn. */
struct ck_spawn_result {
    pid_t pid;     /* in the caller's pid namespace */
    int pidfd;     /* owns the process: wait/kill never race pid reuse */
    int sync_fd;   /* the parent's end of the sync socket (close-on-exec) */
    pid_t supervisor_pid;  /* supervised spawns: the supervisor, a child of the caller; else 0 */
    int supervisor_pidfd;  /* supervised spawns: its pidfd; else -1 */
};

/* A failure, reported by the child or by the parent-side steps of the shim. */
struct ck_failure {
    int32_t stage;  /* enum ck_stage */
    int32_t error;  /* errno, 0 when none applies */
    char detail[256];
};

/* Creates the child (or, to join a pid namespace, an intermediate that creates it with
 * CLONE_PARENT; or, supervised, a supervisor that creates it as its own child). The child stops before its first namespace-dependent step and waits for
 * ck_spawn_continue. Returns 0, or -1 with *failure filled; on failure nothing is left behind. */
int ck_spawn(const struct ck_spawn_config *cfg, struct ck_spawn_result *out, struct ck_failure *failure);

/* Lets the child run its init sequence and waits until it has exec'd (returns 0) or failed
 * (returns -1 with *failure filled; the child has exited, the caller reaps it through the pidfd).
 * *pty_master receives the terminal master when the config asked for one, else -1.
 * Closes sync_fd in every case. */
int ck_spawn_continue(int sync_fd, int *pty_master, struct ck_failure *failure);

/* Thin wrappers for calls that glibc 2.36 has no wrapper for (or where Swift cannot pass
 * the arguments): kept here so all raw syscall numbers live in one place. */
int ck_pidfd_open(pid_t pid);
int ck_pidfd_send_signal(int pidfd, int sig);
int ck_waitid_pidfd(int pidfd, int options, int *code, int *status);
int ck_set_cloexec_from(int lowfd);

#endif
