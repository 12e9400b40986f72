#define _GNU_SOURCE
#include "include/ck_util.h"
#include "include/ck_supervisor.h"

#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <fcntl.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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

#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif

const unsigned char *ck_supervisor_image_pointer(void) { return ck_supervisor_image; }

const char *ck_supervisor_image_sha256_pointer(void) { return ck_supervisor_image_sha256; }

int ck_supervisor_memfd(void)
{
    unsigned long done = 0;
    int fd, err;

    if (ck_supervisor_image_size == 0)
        return -ENOEXEC;
    /* MFD_EXEC (Linux 6.3) says so explicitly: without it a vm.memfd_noexec=1 or 2 namespace
     * makes the memfd non-executable for good; older kernels refuse the flag (EINVAL). */
    fd = (int)syscall(SYS_memfd_create, "berth-supervisor", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL)
        fd = (int)syscall(SYS_memfd_create, "berth-supervisor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    while (done < ck_supervisor_image_size) {
        ssize_t n = write(fd, ck_supervisor_image + done, ck_supervisor_image_size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto failed;
        done += (unsigned long)n;
    }
    if (fchmod(fd, 0555) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
        goto failed;
    return fd;
failed:
    err = errno != 0 ? errno : EIO;
    close(fd);
    return -err;
}
