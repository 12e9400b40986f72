/*
 * CChildPath, Berth's child path: everything a container's init does between clone and execve
 * (and nothing else: host-side wrappers are in CSyscalls, netlink in CNetlink).
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
 *   child -> parent  CK_MSG_PID        (joining a pid namespace, or supervised) the grandchild's pid
 *   EOF                                every holder of the child's end has exec'd or exited
 * What the child reached is not a message but a word in a shared status page (struct
 * ck_status, MAP_SHARED, so it works across the forks of the intermediate and supervisor and
 * needs no system call): the stage it is at, a failure report, and "about to execve" as its
 * very last store. EOF with that store and no failure means execve succeeded; EOF without it
 * means the child died in its init sequence (a seccomp kill, a crash), reported with the stage.
 *
 * Security properties (Documentation/Security.md reviews them against runc and crun):
 *   - every child (direct, intermediate, supervisor fork) is non-dumpable from its first
 *     instruction: the caller's address space is made non-dumpable around the clone, so a
 *     process in the container cannot open /proc/<pid>/{exe,mem,fd,environ} of a child that
 *     still runs host code (CVE-2019-5736, CVE-2016-9962); the caller's own setting is restored
 *     once no child shares its address space any more;
 *   - a child closes (not merely marks close-on-exec) every descriptor it was not given before
 *     it waits for CONTINUE, and everything but stdio and the extra fds once they are placed;
 *   - paths are resolved inside the root (openat2 RESOLVE_IN_ROOT): mount targets, devices,
 *     masked and read-only paths, the working directory and the PATH search; masks bind a
 *     /dev/null checked to be the 1:3 device, opened before pivot_root.
 */
#ifndef CK_SPAWN_H
#define CK_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

/* The init stages, reported with a failure. Swift maps them by value (InitStage(ck:)). */
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

/* The status page a child shares with its spawner (see the protocol above). */
struct ck_status {
    volatile int32_t stage;     /* the step the child is at (enum ck_stage) */
    volatile int32_t failed;    /* 1: the failure below was reported, then the child exited */
    volatile int32_t exec;      /* 1: the child's last store before execve */
    int32_t error;
    char detail[256];
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

    /* Root filesystem (rootfs NULL: stay in the current root). A rootfs needs a new or joined
     * mount namespace: ck_spawn refuses one without, so nothing is ever mounted on the host. */
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
    const char *const *argv;         /* argv[0] is the program; without '/' it is searched in PATH
                                      * inside the root before privileges drop, then exec'd once */
    const char *const *envp;
    const char *path;                /* the PATH to search (from envp or the default) */
    const char *cwd;                 /* entered with openat2(RESOLVE_IN_ROOT) and fchdir */
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
    uint16_t terminal_rows, terminal_columns; /* its size, set before execve */
    const int *extra_fds;            /* passed on as 3, 4, ... (socket activation) */
    uint32_t extra_fd_count;

    int pdeath_signal;               /* 0: none */

    /* Supervised (detached) spawn: a fork of the caller, which outlives it, clones the child and
     * then execs supervisor_path. The child is the supervisor's child, so the supervisor reaps it
     * and records how it ended when the caller is long gone. NULL: the caller is the parent. */
    const char *supervisor_path;     /* for messages; executed from supervisor_exec_fd when >= 0 */
    int supervisor_exec_fd;          /* a sealed memfd of the embedded supervisor, or -1 */
    const char *const *supervisor_argv;
    const int *supervisor_fds;       /* become 3, 4, ... in the supervisor (the child's stdio pipes) */
    uint32_t supervisor_fd_count;

    /* The embedded berth-supervisor as a sealed memfd, or -1: the program is exec'd through it
     * ("--exec PROGRAM ARGV..."), so that /proc/self/exe is never the caller's executable while
     * the kernel resolves the program and its interpreter (a "#!/proc/self/exe" script). */
    int exec_trampoline_fd;

    /* How long the init sequence may take from CONTINUE to execve before ck_spawn_continue
     * kills the child and fails with ETIMEDOUT (0: no deadline). */
    uint32_t init_timeout_ms;
};

/* What the parent gets back from ck_spawn. */
struct ck_spawn_result {
    pid_t pid;     /* in the caller's pid namespace */
    int pidfd;     /* owns the process: wait/kill never race pid reuse */
    int sync_fd;   /* the parent's end of the sync socket (close-on-exec) */
    pid_t supervisor_pid;  /* supervised spawns: the supervisor, a child of the caller; else 0 */
    int supervisor_pidfd;  /* supervised spawns: its pidfd; else -1 */
    /* Owned by the shim until ck_spawn_release: the status page, the direct child's stack
     * (it shares the caller's address space), and the caller's dumpable setting to restore. */
    struct ck_status *status;
    void *stack;
    int restore_dumpable;
};

/* A failure, reported by the child or by the parent-side steps of the shim. */
struct ck_failure {
    int32_t stage;  /* enum ck_stage: where the child was */
    int32_t error;  /* errno, 0 when none applies */
    int32_t timed_out; /* 1: the init deadline passed and the child was killed */
    char detail[256];
};

/* Creates the child (or, to join a pid namespace, an intermediate that creates it with
 * CLONE_PARENT; or, supervised, a supervisor that creates it as its own child). The child stops
 * before its first namespace-dependent step and waits for ck_spawn_continue. Returns 0, or -1
 * with *failure filled; on failure nothing is left behind. On success the caller must call
 * ck_spawn_release(out) once the child can no longer be in its init sequence: after
 * ck_spawn_continue succeeded, or after the child has been reaped. */
int ck_spawn(const struct ck_spawn_config *cfg, struct ck_spawn_result *out, struct ck_failure *failure);

/* Lets the child run its init sequence and waits, at most cfg->init_timeout_ms, until it has
 * exec'd (returns 0) or failed (returns -1 with *failure filled). A child that died without a
 * report, or missed the deadline, is killed and reported with the stage it was at; the caller
 * reaps it through the pidfd. *pty_master receives the terminal master when the config asked
 * for one, else -1. Closes out->sync_fd in every case. */
int ck_spawn_continue(const struct ck_spawn_config *cfg, struct ck_spawn_result *out, int *pty_master,
                      struct ck_failure *failure);

/* Frees the status page and stack and restores the caller's dumpable setting. Call once, when
 * the child has exec'd or been reaped (it must not run on the stack any more). */
void ck_spawn_release(struct ck_spawn_result *out);

#endif
