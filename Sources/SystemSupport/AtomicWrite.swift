package import Glibc

/// Replaces `path` with `bytes` so that readers, in any process, see the old file or the new
/// one and never a part: the bytes go to a new temporary file beside it (a unique name, created
/// `O_EXCL`), which is renamed over `path`. On any failure the temporary file is removed and
/// `path` is left as it was.
///
/// - Parameters:
///   - path: The file to replace or create.
///   - bytes: Its new contents.
///   - mode: The permission bits of the new file.
///   - durable: Whether the contents and the new name must survive a power loss: an `fsync` of
///     the file before the rename and of its directory after. A container's state and its
///     `/etc` files need not (every container is gone after a reboot); at 2–7 ms an `fsync` on
///     a busy disk, seven of them were the largest part of a container's start.
/// - Throws: ``SystemError`` naming the temporary file or `path`.
package func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644, durable: Bool = true)
    throws(SystemError)
{
    let temporary = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd = try sys("create", path: temporary) {
        open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    }
    do throws(SystemError) {
        defer { close(fd) }
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(SystemError) in try writeAll(fd, buffer, path: temporary) }
        }.get()
        if durable { _ = try sys("sync", path: temporary) { fsync(fd) } }
        if durable {
            try renameDurably(temporary, to: path)
        } else {
            _ = try sys("rename \"\(temporary)\" to", path: path) { rename(temporary, path) }
        }
    } catch {
        unlink(temporary)
        throw error
    }
}

/// Renames `from` to `to`, then syncs `to`'s directory so that the new name survives a crash.
///
/// - Throws: ``SystemError`` when the rename fails (the directory sync is best effort).
package func renameDurably(_ from: String, to: String) throws(SystemError) {
    _ = try sys("rename \"\(from)\" to", path: to) { rename(from, to) }
    let fd = open(splitPath(to).parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    fsync(fd)
    close(fd)
}

/// Writes all of `bytes` to `fd`, retrying short writes.
///
/// - Throws: ``SystemError`` naming `path`.
package func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(SystemError) {
    var offset = 0
    while offset < bytes.count {
        offset += try sys("write", path: path) { write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
    }
}
