/* The embedded berth-supervisor as a sealed memfd; see ck_supervisor.h. */
#define _GNU_SOURCE
#include "include/ck_supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U /* Linux 3.17 */
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U /* Linux 6.3 */
#endif
#ifndef F_ADD_SEALS /* Linux 3.17 */
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
