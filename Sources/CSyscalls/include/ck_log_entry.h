/*
 * A container's log: each entry one JSON line of Docker's json-file format
 * ({"log":"…","stream":"stdout","time":"2026-12-03T07:21:19.123456789Z"}), written by two
 * programs: the Containers target's LogFile (attached containers) and berth-supervisor
 * (detached ones), which includes this header. One encoder, so that the two agree byte for
 * byte: the time in RFC 3339 with nanoseconds in UTC, `"` and `\` escaped, \n \r \t as such,
 * every other control character and DEL as \u00xx, and each byte that is not part of valid
 * UTF-8 as U+FFFD.
 *
 * Header-only (static inline) because berth-supervisor is a static musl program built on its
 * own (scripts/build-supervisor), not against this target. No allocation, no locale.
 */
#ifndef CK_LOG_ENTRY_H
#define CK_LOG_ENTRY_H

#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The room ck_log_entry needs for `count` input bytes: 6 output bytes per input byte at most
 * (\u00xx), and the frame around them. */
static inline size_t ck_log_entry_capacity(size_t count) { return count * 6 + 96; }

static inline size_t ck_log_digits(char *out, size_t at, unsigned long value, int width)
{
    int i;
    for (i = width - 1; i >= 0; i--) {
        out[at + (size_t)i] = (char)('0' + value % 10);
        value /= 10;
    }
    return at + (size_t)width;
}

/* `now` as RFC 3339 in UTC with nanoseconds ("2026-12-03T07:21:19.123456789Z", 30 bytes, no
 * terminator) at out; returns 30. */
static inline size_t ck_log_time(char *out, const struct timespec *now)
{
    struct tm tm;
    time_t seconds = now->tv_sec;
    size_t at = 0;
    gmtime_r(&seconds, &tm);
    at = ck_log_digits(out, at, (unsigned long)(tm.tm_year + 1900), 4);
    out[at++] = '-';
    at = ck_log_digits(out, at, (unsigned long)(tm.tm_mon + 1), 2);
    out[at++] = '-';
    at = ck_log_digits(out, at, (unsigned long)tm.tm_mday, 2);
    out[at++] = 'T';
    at = ck_log_digits(out, at, (unsigned long)tm.tm_hour, 2);
    out[at++] = ':';
    at = ck_log_digits(out, at, (unsigned long)tm.tm_min, 2);
    out[at++] = ':';
    at = ck_log_digits(out, at, (unsigned long)tm.tm_sec, 2);
    out[at++] = '.';
    at = ck_log_digits(out, at, (unsigned long)now->tv_nsec, 9);
    out[at++] = 'Z';
    return at;
}

/* The length of the valid UTF-8 sequence at p (1-4), or 0 when it is not valid (overlong,
 * a surrogate, above U+10FFFF, or cut short). */
static inline size_t ck_log_utf8_length(const unsigned char *p, size_t left)
{
    size_t n, i;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 3;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4;
    else
        return 0;
    if (left < n)
        return 0;
    for (i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if (n == 3 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0)))
        return 0;
    if (n == 4 && ((p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90)))
        return 0;
    return n;
}

/* Encodes the first line of bytes[0, count) (through its newline; all of it when it has none:
 * a partial line is an entry of its own) as one entry, newline-terminated, into `out`, which
 * has room for ck_log_entry_capacity(count) bytes. Sets *consumed to the input bytes used and
 * returns the entry's length. `stream` is "stdout" or "stderr". */
static inline size_t ck_log_entry(char *out, const unsigned char *bytes, size_t count, size_t *consumed,
                                  const char *stream, const struct timespec *now)
{
    static const char hex[] = "0123456789abcdef";
    size_t end = 0, at = 0, i;

    while (end < count && bytes[end] != '\n')
        end++;
    if (end < count)
        end++; /* the newline belongs to the entry */
    memcpy(out, "{\"log\":\"", 8);
    at = 8;
    for (i = 0; i < end;) {
        unsigned char c = bytes[i];
        size_t n;
        if (c == '"' || c == '\\') {
            out[at++] = '\\';
            out[at++] = (char)c;
            i++;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            out[at++] = '\\';
            out[at++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            memcpy(out + at, "\\u00", 4);
            out[at + 4] = hex[c >> 4];
            out[at + 5] = hex[c & 0xF];
            at += 6;
            i++;
        } else if ((n = ck_log_utf8_length(bytes + i, end - i)) == 0) {
            memcpy(out + at, "\xEF\xBF\xBD", 3); /* U+FFFD */
            at += 3;
            i++;
        } else {
            memcpy(out + at, bytes + i, n);
            at += n;
            i += n;
        }
    }
    memcpy(out + at, "\",\"stream\":\"", 12);
    at += 12;
    for (i = 0; stream[i] != '\0' && i < 8; i++)
        out[at++] = stream[i];
    memcpy(out + at, "\",\"time\":\"", 10);
    at += 10;
    at += ck_log_time(out + at, now);
    memcpy(out + at, "\"}\n", 3);
    at += 3;
    *consumed = end;
    return at;
}

/* Rotation, the one rule of both writers: closes *fd when it is open and shifts path -> path.1
 * -> … -> path.(max_files - 1), the oldest dropped (with max_files 1, path itself); then opens a
 * new path (*fd, -1 when it cannot) and sets *size to its length. When output was dropped, the
 * new file begins with an entry that says how much, with the json-file driver's attrs:
 * {"log":"berth: log rotation dropped N bytes of older output\n","stream":"stderr",
 *  "attrs":{"berth.dropped":"N"},"time":"…"}. Returns the bytes dropped. */
static inline long long ck_log_rotate(const char *path, int max_files, int *fd, long long *size,
                                      const struct timespec *now)
{
    char from[4096], to[4096], marker[256];
    struct stat st;
    long long dropped = 0;
    int index, length;

    if (*fd >= 0) {
        close(*fd);
        if (max_files > 1)
            snprintf(from, sizeof(from), "%s.%d", path, max_files - 1);
        else
            snprintf(from, sizeof(from), "%s", path);
        if (stat(from, &st) == 0)
            dropped = (long long)st.st_size;
        if (max_files > 1) {
            for (index = max_files - 1; index > 0; index--) {
                if (index == 1)
                    snprintf(from, sizeof(from), "%s", path);
                else
                    snprintf(from, sizeof(from), "%s.%d", path, index - 1);
                snprintf(to, sizeof(to), "%s.%d", path, index);
                rename(from, to);
            }
        } else {
            unlink(path);
        }
    }
    *fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    *size = *fd >= 0 && fstat(*fd, &st) == 0 ? (long long)st.st_size : 0;
    if (dropped == 0 || *fd < 0)
        return dropped;
    length = snprintf(marker, sizeof(marker),
                      "{\"log\":\"berth: log rotation dropped %lld bytes of older output\\n\",\"stream\":\"stderr\","
                      "\"attrs\":{\"berth.dropped\":\"%lld\"},\"time\":\"",
                      dropped, dropped);
    length += (int)ck_log_time(marker + length, now);
    memcpy(marker + length, "\"}\n", 3);
    length += 3;
    if (write(*fd, marker, (size_t)length) == length)
        *size += length;
    return dropped;
}

#endif
