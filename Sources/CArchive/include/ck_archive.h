#pragma once
// libarchive, loaded when Berth first reads or writes a tar, not when the program starts.
//
// The declarations are libarchive's own headers. The definitions (ck_archive.c) are hidden
// forwarders that dlopen libarchive.so.13 on first use: a program that embeds Berth and
// only runs containers from unpacked layers never maps libarchive, and with it libxml2, ICU,
// nettle and the compression libraries (about a sixth of the `berth` CLI's start).
#include <archive.h>
#include <archive_entry.h>

// Loads libarchive if it is not loaded yet. Returns NULL on success, else a static message
// naming what failed (the library or a symbol). Thread-safe; the first result is kept.
const char *ck_archive_load(void);
