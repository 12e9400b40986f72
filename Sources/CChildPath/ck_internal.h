/* Internal to the shim: the sync-socket message and helpers shared by the parent and child
 * halves. Not part of the module's public header. */
#ifndef CK_INTERNAL_H
#define CK_INTERNAL_H

#include "include/ck_spawn.h"
#include <stddef.h>

enum ck_msg_type {
    CK_MSG_CONTINUE = 1,
    CK_MSG_PTY,
    CK_MSG_PID,
};

/* One SOCK_SEQPACKET message; the same size in both directions. */
struct ck_msg {
    int32_t type;
    int32_t pid;
};

/* What every step of a child (or intermediate, or supervisor fork) needs: the config, its end
 * of the sync socket (which moves when stdio is placed) and the shared status page. */
struct ck_ctx {
    const struct ck_spawn_config *cfg;
    int sock;
    struct ck_status *status;
    int trampoline; /* cfg->exec_trampoline_fd, moved with the sync socket when stdio is placed */
};

/* The exit code of a child whose init sequence failed (after reporting it). */
#define CK_EXIT_INIT_FAILED 125
/* Upper bound for extra fds passed on (socket activation needs a handful). */
#define CK_MAX_EXTRA_FDS 64
/* Upper bound for the arguments of a program exec'd through the trampoline. */
#define CK_MAX_TRAMPOLINE_ARGS 4096
/* Upper bound for namespaces to join (there are eight kinds). */
#define CK_MAX_JOINS 16

__attribute__((noreturn)) void ck_child(struct ck_ctx *ctx, int joined);
/* Every signal back to SIG_DFL (SIGKILL and SIGSTOP aside); async-signal-safe. */
void ck_reset_signal_dispositions(void);
/* Records {stage, errno, what + " " + object} in the status page and exits. */
__attribute__((noreturn)) void ck_die(struct ck_ctx *ctx, int stage, int err, const char *what, const char *object);
/* Closes every descriptor but the config's (stdio, extra fds, namespaces to join, supervisor
 * fds) and the sync socket: run first in every child, before it can be seen in a container. */
int ck_close_unneeded_fds(const struct ck_ctx *ctx);
int ck_open_in_root(int rootfd, const char *path, int is_file, int create);
size_t ck_strlcat(char *dst, const char *src, size_t size);
void ck_utoa(unsigned long value, char *buf, size_t size);
const char *ck_ns_name(int type);

#endif
