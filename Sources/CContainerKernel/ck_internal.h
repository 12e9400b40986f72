/* Internal to the shim: the sync-socket message and helpers shared by the parent and child
 * halves. Not part of the module's public header. */
#ifndef CK_INTERNAL_H
#define CK_INTERNAL_H

#include "include/ck_spawn.h"
#include <stddef.h>

enum ck_msg_type {
    CK_MSG_CONTINUE = 1,
    CK_MSG_FAILURE,
    CK_MSG_PTY,
    CK_MSG_PID,
};

/* One SOCK_SEQPACKET message; the same size in both directions. */
struct ck_msg {
    int32_t type;
    int32_t stage;
    int32_t error;
    int32_t pid;
    char detail[256];
};

/* The exit code of a child whose init sequence failed (after reporting it). */
#define CK_EXIT_INIT_FAILED 125
/* Upper bound for extra fds passed on (socket activation needs a handful). */
#define CK_MAX_EXTRA_FDS 64

__attribute__((noreturn)) void ck_child(const struct ck_spawn_config *cfg, int sock, int joined);
/* Every signal back to SIG_DFL (SIGKILL and SIGSTOP aside); async-signal-safe. */
void ck_reset_signal_dispositions(void);
__attribute__((noreturn)) void ck_die(int sock, int stage, int err, const char *what, const char *object);
int ck_open_in_root(int rootfd, const char *path, int is_file, int create);
size_t ck_strlcat(char *dst, const char *src, size_t size);
void ck_utoa(unsigned long value, char *buf, size_t size);
const char *ck_ns_name(int type);

#endif
