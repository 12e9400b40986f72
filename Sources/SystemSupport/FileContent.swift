// Reading whole files: the host's own (state records, /proc, /etc/resolv.conf) and, by the
// stricter rules below, content that another party controls (a container's root filesystem,
// its upper directory, an image's tree).

import CSyscalls
package import Glibc

/// The flags every host-side read of a tree's file content opens with: never follow a final
/// symlink, never block in `open` on a FIFO, never make a terminal the controlling terminal.
private let contentReadFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC

/// Reads the whole file at `path`, one of the host's own (symlinks are followed): at most
/// `limit` bytes, and only a regular file (a FIFO at the path is refused, not waited on).
///
/// - Parameters:
///   - path: The file.
///   - limit: The largest size accepted, in bytes.
///   - truncating: Whether a larger file yields its first `limit` bytes instead of an error.
/// - Returns: The file's bytes.
/// - Throws: ``SystemError``: ``SystemError/Kind/tooLarge`` past `limit`,
///   ``SystemError/Kind/unexpectedFile`` when `path` is not a regular file,
///   ``SystemError/Kind/failed`` (`ENOENT` when it does not exist) when the open or read fails.
package func readWholeFile(_ path: String, limit: Int = .max, truncating: Bool = false) throws(SystemError) -> [UInt8] {
    let file = try OwnedFD(opening: path, flags: contentReadFlags & ~O_NOFOLLOW)
    return try readRegularFile(file, checked: nil, path: path, limit: limit, truncating: truncating)
}

/// Opens the regular file `name` of the directory `parent` for reading, as host code must open
/// anything in a tree that a container can change (its root filesystem, its upper directory,
/// its `/proc/<pid>/root`): the one place that does it.
///
/// The caller looked at `name` before (`checked`, an `lstat`); by the time it opens the name the
/// container may have put something else there. So the open neither follows a symlink nor
/// waits for a FIFO's writer, and what was opened must be a regular file with the device and
/// inode that were checked, or nothing is read: a FIFO swapped in would hang the reader, a
/// device the container may not open itself (the device cgroup binds the container, not the
/// host) would put the host's device into the archive or copy.
///
/// Costs one `openat` and one `fstat`.
///
/// - Parameters:
///   - name: The name in `parent`.
///   - parent: An already-resolved directory fd.
///   - checked: What the caller saw at `name`.
///   - path: The path for messages, as the tree names it.
/// - Returns: The open file.
/// - Throws: ``SystemError``: ``SystemError/Kind/unexpectedFile`` naming `path` when something
///   other than the checked regular file is at `name`, ``SystemError/Kind/failed`` when the
///   open fails otherwise.
package func openRegularFile(_ name: String, in parent: Int32, checked: Glibc.stat, path: String) throws(SystemError) -> OwnedFD {
    let fd = openat(parent, name, contentReadFlags)
    guard fd >= 0 else {
        let err = Glibc.errno
        // ELOOP: a symlink is there now; ENXIO: a socket; ENOENT, ENOTDIR: gone since the
        // check. EWOULDBLOCK (a lease the container holds) stays an I/O error, as O_NONBLOCK
        // makes it instead of a wait for the lease to break.
        if err == ELOOP || err == ENXIO || err == ENOENT || err == ENOTDIR {
            throw .unexpectedFile(path, errno: err)
        }
        throw SystemError(errno: .init(rawValue: err), detail: "open \"\(path)\"", path: path)
    }
    let file = OwnedFD(fd)
    _ = try checkedRegularFile(file, checked: checked, path: path)
    return file
}

/// Reads the whole regular file at `path` below `root` as the tree sees it, symlinks included
/// and resolved inside `root` (``openInRoot(_:_:flags:)``), through
/// ``openRegularFile(_:in:checked:path:)``'s rules: an absolute symlink cannot lead to a host
/// file, a FIFO or device is refused, not read, and at most `limit` bytes are read.
///
/// For small files the runtime itself reads out of a container's root filesystem, such as
/// `/etc/passwd` and `/etc/group`.
///
/// - Parameters:
///   - path: The path as the tree sees it (`/etc/passwd`).
///   - root: The tree's root directory.
///   - limit: The largest size accepted, in bytes.
/// - Returns: The file's bytes, or `nil` when there is no file at `path`.
/// - Throws: ``SystemError``: ``SystemError/Kind/unexpectedFile`` naming `path` when it is not a
///   regular file, ``SystemError/Kind/tooLarge`` when it holds more than `limit` bytes,
///   ``SystemError/Kind/failed`` when the root cannot be opened or the read fails.
package func readRegularFile(_ path: String, inRoot root: String, limit: Int) throws(SystemError) -> [UInt8]? {
    let rootFD = try OwnedFD(opening: root, flags: CK_O_PATH | O_DIRECTORY)
    // O_NOFOLLOW would refuse a symlink that stays inside the root (`passwd -> ../usr/passwd`);
    // RESOLVE_IN_ROOT makes following it safe, so the flag is left out here only.
    let fd = openInRoot(rootFD.raw, path, flags: contentReadFlags & ~O_NOFOLLOW)
    guard fd >= 0 else {
        let err = Glibc.errno
        if err == ENOENT || err == ENOTDIR { return nil }
        if err == ENXIO || err == ELOOP { throw .unexpectedFile(path, errno: err) }
        throw SystemError(errno: .init(rawValue: err), detail: "open \"\(path)\"", path: path)
    }
    return try readRegularFile(OwnedFD(fd), checked: nil, path: path, limit: limit, truncating: false)
}

/// The whole content of the open `file`, if it is a regular file (and the one `checked`, when
/// given) of at most `limit` bytes.
private func readRegularFile(_ file: OwnedFD, checked: stat?, path: String, limit: Int, truncating: Bool)
    throws(SystemError) -> [UInt8]
{
    let st = try checkedRegularFile(file, checked: checked, path: path)
    if st.st_size > limit && !truncating { throw .tooLarge(path, limit: limit) }
    // Files of /proc say 0 and a file may grow after the fstat: the buffer grows as it fills.
    var bytes = [UInt8](repeating: 0, count: min(Int(st.st_size), limit) + 1)
    var count = 0
    while true {
        if count == bytes.count {
            if count > limit { break }
            bytes += [UInt8](repeating: 0, count: min(max(count, 4096), limit - count + 1))
        }
        let n = try sys("read", path: path) {
            bytes.withUnsafeMutableBytes { read(file.raw, $0.baseAddress! + count, $0.count - count) }
        }
        if n == 0 { break }
        count += n
    }
    if count > limit {
        guard truncating else { throw .tooLarge(path, limit: limit) }
        count = limit
    }
    return Array(bytes[..<count])
}

/// `file`'s `fstat`, if it is a regular file and (when `checked` is given) the one that was
/// checked.
private func checkedRegularFile(_ file: OwnedFD, checked: stat?, path: String) throws(SystemError) -> stat {
    var st = stat()
    _ = try sys("stat", path: path) { fstat(file.raw, &st) }
    guard st.st_mode & S_IFMT == S_IFREG else { throw .unexpectedFile(path, now: st, checked: checked != nil) }
    if let checked, checked.st_dev != st.st_dev || checked.st_ino != st.st_ino {
        throw .unexpectedFile(path, now: st, checked: true)
    }
    return st
}

extension SystemError {
    /// `path` is not the regular file expected: `st` is what is there. `checked` says whether
    /// the caller had seen a regular file there a moment before.
    package static func unexpectedFile(_ path: String, now st: Glibc.stat, checked: Bool) -> SystemError {
        let kinds: [mode_t: String] = [S_IFIFO: "a fifo", S_IFCHR: "a character device", S_IFBLK: "a block device",
                                       S_IFSOCK: "a socket", S_IFDIR: "a directory", S_IFLNK: "a symlink"]
        let kind = kinds[st.st_mode & S_IFMT] ?? "another file"
        let detail = checked ? "\"\(path)\" changed while it was read: it is \(kind) now" : "\"\(path)\" is \(kind), not a regular file"
        return SystemError(.unexpectedFile, detail: detail, path: path)
    }

    /// `path` could not be opened as the regular file expected there (`errno` says why: a
    /// symlink, a socket).
    static func unexpectedFile(_ path: String, errno: Int32) -> SystemError {
        SystemError(.unexpectedFile, errno: .init(rawValue: errno), detail: "\"\(path)\" is not the regular file expected", path: path)
    }

    /// `path` is larger than `limit` bytes.
    static func tooLarge(_ path: String, limit: Int) -> SystemError {
        SystemError(.tooLarge, detail: "\"\(path)\" is larger than \(limit) bytes", path: path)
    }
}

/// Reads up to `count` bytes of the open file `file` at `offset` (`pread`, retried on `EINTR`
/// and short reads): fewer only at the end of the file.
///
/// - Parameters:
///   - file: An open file.
///   - offset: Where to start, in bytes.
///   - count: How many bytes to read.
///   - path: The file's path, for messages.
/// - Returns: The bytes read.
/// - Throws: ``SystemError`` naming `path` when a read fails.
package func readBytes(_ file: OwnedFD, at offset: Int, count: Int, path: String) throws(SystemError) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    var filled = 0
    while filled < count {
        let n = try sys("read", path: path) {
            bytes.withUnsafeMutableBytes { pread(file.raw, $0.baseAddress! + filled, count - filled, off_t(offset + filled)) }
        }
        if n == 0 { break }
        filled += n
    }
    return Array(bytes[..<filled])
}
