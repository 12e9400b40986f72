/*
 * Small wrappers the Swift side needs where the C interface does not import cleanly: the
 * packed struct epoll_event, variadic ioctl, and prlimit's enum-typed resource argument.
 * They run in the host process only (never in a cloned child).
 */
#ifndef CK_UTIL_H
#define CK_UTIL_H

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/types.h>

int ck_epoll_add(int epfd, int fd, uint32_t events, uint64_t token);
int ck_epoll_mod(int epfd, int fd, uint32_t events, uint64_t token);
int ck_epoll_del(int epfd, int fd);
/* Waits for up to `max` events; fills tokens[i] and events[i]. Returns the count or -1. */
int ck_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);

/* pthread_setname_np needs _GNU_SOURCE, which Swift's Glibc module is not built with. */
int ck_set_thread_name(const char *name);

/* pipe2(O_CLOEXEC): atomic, so no concurrent fork inherits a half-set-up pipe. */
int ck_pipe_cloexec(int fds[2]);

int ck_set_winsize(int fd, uint16_t rows, uint16_t cols);
int ck_prlimit(pid_t pid, int resource, uint64_t soft, uint64_t hard);
/* prctl(PR_GET_DUMPABLE): prctl is variadic, which Swift does not import. */
int ck_get_dumpable(void);

#endif
