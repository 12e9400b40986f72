// The one `rm -rf` of the tree. Every step works below an already-open directory with `*at`
// calls that never follow a symlink, so a tree being removed cannot redirect the removal onto
// the host; and it never descends into a mount.
//
// A mount is told by its mount id (statx STATX_MNT_ID), not by st_dev: st_dev differs between
// the files of an overlay whose layers sit on several file systems (so an st_dev walk refuses
// trees that hold no mount, issue 12), and it is the same for a bind mount of the same file
// system (so an st_dev walk deletes through it into the bind's source).

import CSyscalls
import Glibc

/// Removes `path` recursively (`rm -rf`); a missing path is not an error.
///
/// - Parameter path: The file or directory to remove.
/// - Throws: ``SystemError`` of kind ``SystemError/Kind/mountPoint`` naming the mount when one
///   is at `path` or below it (nothing below a mount is touched), ``SystemError/Kind/failed``
///   when a removal fails.
package func removeTree(_ path: String) throws(SystemError) {
    let (parent, name) = splitPath(path)
    let fd = open(parent, CK_O_PATH | O_DIRECTORY | O_CLOEXEC)
    if fd < 0 {
        if Glibc.errno == ENOENT { return }
        throw SystemError.current("remove \"\(path)\"", path: path)
    }
    defer { close(fd) }
    try removeTree(in: fd, name, path: path)
}

/// Removes `name` in the directory `parent` recursively (`rm -rf`); a missing `name` is not an
/// error.
///
/// - Parameters:
///   - parent: An already-resolved directory; the tree must be on its mount.
///   - name: The name in `parent`.
///   - path: The path for messages.
/// - Throws: ``SystemError`` as ``removeTree(_:)``.
package func removeTree(in parent: Int32, _ name: String, path: String) throws(SystemError) {
    try remove(name, in: parent, path: path, mount: try mountID(of: parent, path: path))
}

/// Removes everything inside the directory `name` of `parent`, keeping the directory.
///
/// - Throws: ``SystemError`` as ``removeTree(_:)``.
package func emptyDirectory(in parent: Int32, _ name: String, path: String) throws(SystemError) {
    let mount = try mountID(of: parent, path: path)
    let dir = try openDirectory(name, in: parent, path: path, mount: mount)
    defer { close(dir) }
    for entry in try directoryEntries(dir, path: path) {
        try remove(entry.name, in: dir, path: path + "/" + entry.name, mount: mount)
    }
}

private func remove(_ name: String, in parent: Int32, path: String, mount: UInt64) throws(SystemError) {
    while unlinkat(parent, name, 0) != 0 {
        switch Glibc.errno {
        case ENOENT: return
        case EINTR: continue
        case EISDIR:
            let dir = try openDirectory(name, in: parent, path: path, mount: mount)
            defer { close(dir) }
            for entry in try directoryEntries(dir, path: path) {
                try remove(entry.name, in: dir, path: path + "/" + entry.name, mount: mount)
            }
            _ = try sys("remove directory", path: path) { unlinkat(parent, name, AT_REMOVEDIR) }
            return
        default: throw SystemError.current("remove \"\(path)\"", path: path)
        }
    }
}

/// Opens the directory `name` of `parent` (never through a symlink) and checks that it is on
/// `mount`: the check is on the open directory itself, so nothing can be swapped in between.
private func openDirectory(_ name: String, in parent: Int32, path: String, mount: UInt64) throws(SystemError) -> Int32 {
    let dir = try sys("open directory", path: path) {
        openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    }
    do throws(SystemError) {
        guard try mountID(of: dir, path: path) == mount else {
            throw SystemError(.mountPoint, errno: .resourceBusy, detail: "remove \"\(path)\": a mount is there", path: path)
        }
    } catch {
        close(dir)
        throw error
    }
    return dir
}

private func mountID(of fd: Int32, path: String) throws(SystemError) -> UInt64 {
    var id: UInt64 = 0
    _ = try sys("find the mount of", path: path) { ck_mount_id(fd, "", &id) }
    return id
}
