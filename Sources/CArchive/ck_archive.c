// Hidden forwarders to libarchive, resolved with dlopen on first use (see ck_archive.h).
//
// Each forwarder has libarchive's own name and is checked against its header by the compiler.
// Hidden visibility keeps them out of the program's dynamic symbol table, so libarchive's
// calls to its own functions never come back here. Only the three constructors load the
// library: every other function needs an object one of them returned.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

#pragma GCC visibility push(hidden)
#include "ck_archive.h"

#define CK_ARCHIVE_FUNCTIONS(X) \
    X(archive_entry_atime) \
    X(archive_entry_atime_is_set) \
    X(archive_entry_atime_nsec) \
    X(archive_entry_free) \
    X(archive_entry_gid) \
    X(archive_entry_hardlink) \
    X(archive_entry_mode) \
    X(archive_entry_mtime) \
    X(archive_entry_mtime_nsec) \
    X(archive_entry_new) \
    X(archive_entry_pathname) \
    X(archive_entry_rdev) \
    X(archive_entry_set_filetype) \
    X(archive_entry_set_gid) \
    X(archive_entry_set_hardlink) \
    X(archive_entry_set_mode) \
    X(archive_entry_set_mtime) \
    X(archive_entry_set_pathname) \
    X(archive_entry_set_rdev) \
    X(archive_entry_set_size) \
    X(archive_entry_set_symlink) \
    X(archive_entry_set_uid) \
    X(archive_entry_size) \
    X(archive_entry_symlink) \
    X(archive_entry_uid) \
    X(archive_entry_xattr_add_entry) \
    X(archive_entry_xattr_next) \
    X(archive_entry_xattr_reset) \
    X(archive_error_string) \
    X(archive_filter_code) \
    X(archive_read_data) \
    X(archive_read_data_block) \
    X(archive_read_free) \
    X(archive_read_new) \
    X(archive_read_next_header) \
    X(archive_read_open) \
    X(archive_read_open_fd) \
    X(archive_read_support_filter_gzip) \
    X(archive_read_support_filter_zstd) \
    X(archive_read_support_format_raw) \
    X(archive_read_support_format_tar) \
    X(archive_write_add_filter_gzip) \
    X(archive_write_add_filter_zstd) \
    X(archive_write_close) \
    X(archive_write_data) \
    X(archive_write_free) \
    X(archive_write_header) \
    X(archive_write_new) \
    X(archive_write_open) \
    X(archive_write_set_bytes_in_last_block) \
    X(archive_write_set_bytes_per_block) \
    X(archive_write_set_filter_option) \
    X(archive_write_set_format_pax_restricted) \
    X(archive_write_set_format_raw)

#define CK_POINTER(name) __typeof__(name) *name;
static struct { CK_ARCHIVE_FUNCTIONS(CK_POINTER) } ck_archive;

static const char *ck_archive_failure;
static pthread_once_t ck_archive_once = PTHREAD_ONCE_INIT;

static void ck_archive_open(void) {
    // RTLD_LOCAL: libarchive and its libraries stay out of the global symbol scope.
    void *library = dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        ck_archive_failure = "libarchive.so.13 could not be loaded (install the libarchive13 package)";
        return;
    }
#define CK_RESOLVE(name) \
    *(void **)&ck_archive.name = dlsym(library, #name); \
    if (ck_archive.name == NULL) { \
        ck_archive_failure = "libarchive.so.13 has no " #name " (libarchive 3.3.3 or later is needed)"; \
        return; \
    }
    CK_ARCHIVE_FUNCTIONS(CK_RESOLVE)
}

const char *ck_archive_load(void) {
    pthread_once(&ck_archive_once, ck_archive_open);
    return ck_archive_failure;
}

time_t archive_entry_atime(struct archive_entry *a0) { return ck_archive.archive_entry_atime(a0); }
int archive_entry_atime_is_set(struct archive_entry *a0) { return ck_archive.archive_entry_atime_is_set(a0); }
long archive_entry_atime_nsec(struct archive_entry *a0) { return ck_archive.archive_entry_atime_nsec(a0); }
void archive_entry_free(struct archive_entry *a0) { ck_archive.archive_entry_free(a0); }
la_int64_t archive_entry_gid(struct archive_entry *a0) { return ck_archive.archive_entry_gid(a0); }
const char *archive_entry_hardlink(struct archive_entry *a0) { return ck_archive.archive_entry_hardlink(a0); }
__LA_MODE_T archive_entry_mode(struct archive_entry *a0) { return ck_archive.archive_entry_mode(a0); }
time_t archive_entry_mtime(struct archive_entry *a0) { return ck_archive.archive_entry_mtime(a0); }
long archive_entry_mtime_nsec(struct archive_entry *a0) { return ck_archive.archive_entry_mtime_nsec(a0); }
struct archive_entry *archive_entry_new(void) { return ck_archive_load() ? NULL : ck_archive.archive_entry_new(); }
const char *archive_entry_pathname(struct archive_entry *a0) { return ck_archive.archive_entry_pathname(a0); }
dev_t archive_entry_rdev(struct archive_entry *a0) { return ck_archive.archive_entry_rdev(a0); }
void archive_entry_set_filetype(struct archive_entry *a0, unsigned int a1) { ck_archive.archive_entry_set_filetype(a0, a1); }
void archive_entry_set_gid(struct archive_entry *a0, la_int64_t a1) { ck_archive.archive_entry_set_gid(a0, a1); }
void archive_entry_set_hardlink(struct archive_entry *a0, const char *a1) { ck_archive.archive_entry_set_hardlink(a0, a1); }
void archive_entry_set_mode(struct archive_entry *a0, __LA_MODE_T a1) { ck_archive.archive_entry_set_mode(a0, a1); }
void archive_entry_set_mtime(struct archive_entry *a0, time_t a1, long a2) { ck_archive.archive_entry_set_mtime(a0, a1, a2); }
void archive_entry_set_pathname(struct archive_entry *a0, const char *a1) { ck_archive.archive_entry_set_pathname(a0, a1); }
void archive_entry_set_rdev(struct archive_entry *a0, dev_t a1) { ck_archive.archive_entry_set_rdev(a0, a1); }
void archive_entry_set_size(struct archive_entry *a0, la_int64_t a1) { ck_archive.archive_entry_set_size(a0, a1); }
void archive_entry_set_symlink(struct archive_entry *a0, const char *a1) { ck_archive.archive_entry_set_symlink(a0, a1); }
void archive_entry_set_uid(struct archive_entry *a0, la_int64_t a1) { ck_archive.archive_entry_set_uid(a0, a1); }
la_int64_t archive_entry_size(struct archive_entry *a0) { return ck_archive.archive_entry_size(a0); }
const char *archive_entry_symlink(struct archive_entry *a0) { return ck_archive.archive_entry_symlink(a0); }
la_int64_t archive_entry_uid(struct archive_entry *a0) { return ck_archive.archive_entry_uid(a0); }
void archive_entry_xattr_add_entry(struct archive_entry *a0, const char *a1, const void *a2, size_t a3) { ck_archive.archive_entry_xattr_add_entry(a0, a1, a2, a3); }
int archive_entry_xattr_next(struct archive_entry *a0, const char **a1, const void **a2, size_t *a3) { return ck_archive.archive_entry_xattr_next(a0, a1, a2, a3); }
int archive_entry_xattr_reset(struct archive_entry *a0) { return ck_archive.archive_entry_xattr_reset(a0); }
const char *archive_error_string(struct archive *a0) { return ck_archive.archive_error_string(a0); }
int archive_filter_code(struct archive *a0, int a1) { return ck_archive.archive_filter_code(a0, a1); }
la_ssize_t archive_read_data(struct archive *a0, void *a1, size_t a2) { return ck_archive.archive_read_data(a0, a1, a2); }
int archive_read_data_block(struct archive *a0, const void **a1, size_t *a2, la_int64_t *a3) { return ck_archive.archive_read_data_block(a0, a1, a2, a3); }
int archive_read_free(struct archive *a0) { return ck_archive.archive_read_free(a0); }
struct archive *archive_read_new(void) { return ck_archive_load() ? NULL : ck_archive.archive_read_new(); }
int archive_read_next_header(struct archive *a0, struct archive_entry **a1) { return ck_archive.archive_read_next_header(a0, a1); }
int archive_read_open(struct archive *a0, void *a1, archive_open_callback *a2, archive_read_callback *a3, archive_close_callback *a4) { return ck_archive.archive_read_open(a0, a1, a2, a3, a4); }
int archive_read_open_fd(struct archive *a0, int a1, size_t a2) { return ck_archive.archive_read_open_fd(a0, a1, a2); }
int archive_read_support_filter_gzip(struct archive *a0) { return ck_archive.archive_read_support_filter_gzip(a0); }
int archive_read_support_filter_zstd(struct archive *a0) { return ck_archive.archive_read_support_filter_zstd(a0); }
int archive_read_support_format_raw(struct archive *a0) { return ck_archive.archive_read_support_format_raw(a0); }
int archive_read_support_format_tar(struct archive *a0) { return ck_archive.archive_read_support_format_tar(a0); }
int archive_write_add_filter_gzip(struct archive *a0) { return ck_archive.archive_write_add_filter_gzip(a0); }
int archive_write_add_filter_zstd(struct archive *a0) { return ck_archive.archive_write_add_filter_zstd(a0); }
int archive_write_close(struct archive *a0) { return ck_archive.archive_write_close(a0); }
la_ssize_t archive_write_data(struct archive *a0, const void *a1, size_t a2) { return ck_archive.archive_write_data(a0, a1, a2); }
int archive_write_free(struct archive *a0) { return ck_archive.archive_write_free(a0); }
int archive_write_header(struct archive *a0, struct archive_entry *a1) { return ck_archive.archive_write_header(a0, a1); }
struct archive *archive_write_new(void) { return ck_archive_load() ? NULL : ck_archive.archive_write_new(); }
int archive_write_open(struct archive *a0, void *a1, archive_open_callback *a2, archive_write_callback *a3, archive_close_callback *a4) { return ck_archive.archive_write_open(a0, a1, a2, a3, a4); }
int archive_write_set_bytes_in_last_block(struct archive *a0, int a1) { return ck_archive.archive_write_set_bytes_in_last_block(a0, a1); }
int archive_write_set_bytes_per_block(struct archive *a0, int a1) { return ck_archive.archive_write_set_bytes_per_block(a0, a1); }
int archive_write_set_filter_option(struct archive *a0, const char *a1, const char *a2, const char *a3) { return ck_archive.archive_write_set_filter_option(a0, a1, a2, a3); }
int archive_write_set_format_pax_restricted(struct archive *a0) { return ck_archive.archive_write_set_format_pax_restricted(a0); }
int archive_write_set_format_raw(struct archive *a0) { return ck_archive.archive_write_set_format_raw(a0); }

#pragma GCC visibility pop
