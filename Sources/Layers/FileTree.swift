// Small fd-relative file tree helpers shared by unpacking, snapshots and the store. Everything
// works below an already-resolved directory fd with `*at` calls that never follow a symlink in
// the last component (removal is SystemSupport's removeTree).

import CSyscalls
import Glibc
import SystemSupport

/// An open file descriptor this code owns; closed exactly once, by ``close()`` or on deinit.
final class OwnedFD {
    private(set) var raw: Int32

    init(_ raw: Int32) { self.raw = raw }

    /// Opens `path` with `flags` (plus `O_CLOEXEC`).
    convenience init(opening path: String, flags: Int32, mode: mode_t = 0, at dirfd: Int32 = AT_FDCWD)
        throws(LayerError)
    {
        self.init(try LayerError.from(try sys("open", path: path) { openat(dirfd, path, flags | O_CLOEXEC, mode) }))
    }

    func close() {
        if raw >= 0 { Glibc.close(raw) }
        raw = -1
    }

    deinit { close() }
}

/// `lstat` of `name` in `parent`, or `nil` when it does not exist.
func statEntry(in parent: Int32, _ name: String, path: String) throws(LayerError) -> stat? {
    var st = stat()
    if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { return st }
    if Glibc.errno == ENOENT || Glibc.errno == ENOTDIR { return nil }
    throw LayerError(code: .io, entry: path, errno: .init(rawValue: Glibc.errno), detail: "stat \"\(path)\"")
}

// MARK: - Reading content another party controls

/// The flags every host-side read of a tree's file content opens with: never follow a final
/// symlink, never block in `open` on a FIFO, never make a terminal the controlling terminal.
private let contentReadFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC

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
/// - Throws: ``LayerError`` with ``LayerError/Code/unexpectedFile`` naming `path` when something
///   other than the checked regular file is at `name`, other codes when the open fails.
func openRegularFile(_ name: String, in parent: Int32, checked: stat, path: String) throws(LayerError) -> OwnedFD {
    let fd = openat(parent, name, contentReadFlags)
    guard fd >= 0 else {
        let err = Glibc.errno
        // ELOOP: a symlink is there now; ENXIO: a socket; ENOENT, ENOTDIR: gone since the
        // check. EWOULDBLOCK (a lease the container holds) stays an I/O error, as O_NONBLOCK
        // makes it instead of a wait for the lease to break.
        if err == ELOOP || err == ENXIO || err == ENOENT || err == ENOTDIR {
            throw LayerError.unexpectedFile(path, errno: .init(rawValue: err))
        }
        throw LayerError(code: .io, entry: path, errno: .init(rawValue: err), detail: "open \"\(path)\"")
    }
    return try checkedRegularFile(OwnedFD(fd), checked: checked, path: path).file
}

/// `file` with its `fstat`, if it is a regular file and (when `checked` is given) the one
/// that was checked; closed otherwise.
private func checkedRegularFile(_ file: OwnedFD, checked: stat?, path: String) throws(LayerError)
    -> (file: OwnedFD, stat: stat)
{
    var st = stat()
    _ = try LayerError.from(try sys("stat", path: path) { fstat(file.raw, &st) })
    guard st.st_mode & S_IFMT == S_IFREG else { throw LayerError.unexpectedFile(path, now: st, checked: checked != nil) }
    if let checked, checked.st_dev != st.st_dev || checked.st_ino != st.st_ino {
        throw LayerError.unexpectedFile(path, now: st, checked: true)
    }
    return (file, st)
}

/// Reads the whole regular file at `path` below `root` as the tree sees it, symlinks included
/// and resolved inside `root` (openat2 `RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS`), through
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
/// - Throws: ``LayerError``: ``LayerError/Code/unexpectedFile`` naming `path` when it is not a regular
///   file, ``LayerError/Code/tooLarge`` when it holds more than `limit` bytes, other codes when
///   the root cannot be opened or the read fails.
package func readRegularFile(_ path: String, inRoot root: String, limit: Int) throws(LayerError) -> [UInt8]? {
    let rootFD = try OwnedFD(opening: root, flags: CK_O_PATH | O_DIRECTORY)
    let relative = String(path.drop { $0 == "/" })
    // O_NOFOLLOW would refuse a symlink that stays inside the root (`passwd -> ../usr/passwd`);
    // RESOLVE_IN_ROOT makes following it safe, so the flag is left out here only.
    let fd = ck_openat2(rootFD.raw, relative.isEmpty ? "." : relative, contentReadFlags & ~O_NOFOLLOW, 0,
                        UInt64(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS))
    guard fd >= 0 else {
        let err = Glibc.errno
        if err == ENOENT || err == ENOTDIR { return nil }
        if err == ENXIO || err == ELOOP { throw LayerError.unexpectedFile(path, errno: .init(rawValue: err)) }
        throw LayerError(code: .io, entry: path, errno: .init(rawValue: err), detail: "open \"\(path)\"")
    }
    let (file, st) = try checkedRegularFile(OwnedFD(fd), checked: nil, path: path)
    if st.st_size > limit { throw LayerError.tooLarge(path, limit: limit) }
    var bytes = [UInt8](repeating: 0, count: Int(st.st_size) + 1)
    var count = 0
    while true {
        if count == bytes.count {
            // It grew after the fstat; read on, up to the limit.
            guard count <= limit else { throw LayerError.tooLarge(path, limit: limit) }
            bytes += [UInt8](repeating: 0, count: min(max(count, 4096), limit + 1 - count))
        }
        let n = try LayerError.from(try sys("read", path: path) {
            bytes.withUnsafeMutableBytes { read(file.raw, $0.baseAddress! + count, $0.count - count) }
        })
        if n == 0 { break }
        count += n
    }
    guard count <= limit else { throw LayerError.tooLarge(path, limit: limit) }
    return Array(bytes[..<count])
}

/// Sets the permission bits of the device or FIFO `name` in `parent` that the caller has just
/// made with `mknodat` (whose mode the umask reduced), without following a symlink that was
/// put at `name` meanwhile: `fchmodat` has no working `AT_SYMLINK_NOFOLLOW` before
/// `fchmodat2`, so the node is opened `O_PATH|O_NOFOLLOW`, checked to be the node made (its
/// type and device number), and changed through its `/proc/self/fd` link, as glibc's own
/// `fchmodat(…, AT_SYMLINK_NOFOLLOW)` does.
///
/// - Parameters:
///   - name: The node's name in `parent`.
///   - parent: An already-resolved directory fd.
///   - mode: The node's type and permission bits, as passed to `mknodat`.
///   - device: The device number passed to `mknodat` (ignored for a FIFO).
///   - path: The path for messages.
/// - Throws: ``LayerError``: ``LayerError/Code/unexpectedFile`` when something other than the
///   node made is at `name`, other codes when the change fails.
func setNodeMode(_ name: String, in parent: Int32, mode: mode_t, device: dev_t, path: String) throws(LayerError) {
    let node = OwnedFD(try LayerError.from(try sys("open", path: path) { openat(parent, name, CK_O_PATH | O_NOFOLLOW | O_CLOEXEC) }))
    var st = stat()
    _ = try LayerError.from(try sys("stat", path: path) { fstat(node.raw, &st) })
    let type = mode & S_IFMT
    guard st.st_mode & S_IFMT == type, type == S_IFIFO || st.st_rdev == device else {
        throw LayerError.unexpectedFile(path, now: st, checked: true)
    }
    _ = try LayerError.from(try sys("set mode of", path: path) { chmod("/proc/self/fd/\(node.raw)", mode & 0o7777) })
}
