/*
 * berth-supervisor, embedded: the static executable built by scripts/build-supervisor from
 * Sources/berth-supervisor/main.c, as bytes, so that a program depending on Berth has it with
 * nothing to build or ship. The host side materializes it (ck_supervisor_memfd, or a file for
 * the --init bind mount).
 */
#ifndef CK_SUPERVISOR_H
#define CK_SUPERVISOR_H

extern const unsigned char ck_supervisor_image[];
/* 0 when this architecture has no image yet. */
extern const unsigned long ck_supervisor_image_size;
/* Lower-case hex SHA-256 of the image ("" when there is none). */
extern const char ck_supervisor_image_sha256[];

/* A sealed memfd holding the image (F_SEAL_SHRINK | GROW | WRITE | SEAL), close-on-exec, to be
 * run with execveat(fd, "", ..., AT_EMPTY_PATH): no file on disk, and /proc/<pid>/exe of the
 * supervisor cannot be written through. Returns the fd or -errno (-ENOEXEC: no image for this
 * architecture). */
int ck_supervisor_memfd(void);

/* The image and its digest as pointers (Swift imports a C array of unknown size poorly). */
const unsigned char *ck_supervisor_image_pointer(void);
const char *ck_supervisor_image_sha256_pointer(void);

#endif
