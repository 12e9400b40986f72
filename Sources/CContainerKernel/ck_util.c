#define _GNU_SOURCE
#include "include/ck_util.h"

#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

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

int ck_prlimit(pid_t pid, int resource, uint64_t soft, uint64_t hard)
{
    struct rlimit64 lim = {soft, hard};
    return prlimit64(pid, (__rlimit_resource_t)resource, &lim, NULL);
}

int ck_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }

int ck_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int ck_get_dumpable(void) { return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); }
