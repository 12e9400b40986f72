// Small fd-relative file tree helpers shared by unpacking, snapshots and the store. Everything
// works below an already-resolved directory fd with `*at` calls that never follow a symlink in
// the last component, so a tree being removed cannot redirect the removal onto the host.

import Glibc

/// An open file descriptor this code owns; closed exactly once, by ``close()`` or on deinit.
final class OwnedFD {
    private(set) var raw: Int32

    init(_ raw: Int32) { self.raw = raw }

    /// Opens `path` with `flags` (plus `O_CLOEXEC`).
    convenience init(opening path: String, flags: Int32, mode: mode_t = 0, at dirfd: Int32 = AT_FDCWD)
        throws(LayerError)
    {
        self.init(try sys("open", path) { openat(dirfd, path, flags | O_CLOEXEC, mode) })
    }

    func close() {
        if raw >= 0 { Glibc.close(raw) }
        raw = -1
    }

    deinit { close() }
}

/// The names in the directory open as `fd` (without `.` and `..`), each with its `d_type`.
///
/// The fd is duplicated for `fdopendir`, so the caller keeps ownership of `fd`.
func directoryEntries(_ fd: Int32, path: String) throws(LayerError) -> [(name: String, type: UInt8)] {
    let copy = try sys("read directory", path) { openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    guard let dir = fdopendir(copy) else {
        let err = Glibc.errno
        Glibc.close(copy)
        throw LayerError(code: .io, entry: path, errno: .init(rawValue: err), detail: "read directory \"\(path)\"")
    }
    defer { closedir(dir) }
    var result: [(name: String, type: UInt8)] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: &entry.pointee.d_name) {
            String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
        }
        if name == "." || name == ".." { continue }
        result.append((name, entry.pointee.d_type))
    }
    return result
}

/// Removes `name` in the directory `parent`, recursively if it is a directory (`rm -rf`).
/// A missing `name` is not an error.
func removeTree(in parent: Int32, _ name: String, path: String) throws(LayerError) {
    if unlinkat(parent, name, 0) == 0 { return }
    switch Glibc.errno {
    case ENOENT: return
    case EISDIR: break
    case EINTR: return try removeTree(in: parent, name, path: path)
    default:
        throw LayerError(code: .io, entry: path, errno: .init(rawValue: Glibc.errno), detail: "remove \"\(path)\"")
    }
    try emptyDirectory(in: parent, name, path: path)
    _ = try sys("remove directory", path) { unlinkat(parent, name, AT_REMOVEDIR) }
}

/// Removes everything inside the directory `name` of `parent`, keeping the directory.
func emptyDirectory(in parent: Int32, _ name: String, path: String) throws(LayerError) {
    let dir = OwnedFD(try sys("open directory", path) {
        openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    })
    for entry in try directoryEntries(dir.raw, path: path) {
        try removeTree(in: dir.raw, entry.name, path: path + "/" + entry.name)
    }
}

/// Removes the absolute `path` recursively; a missing path is not an error.
func removeTree(_ path: String) throws(LayerError) {
    let (parent, name) = splitPath(path)
    let fd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC)
    if fd < 0 {
        if Glibc.errno == ENOENT { return }
        throw LayerError(code: .io, entry: path, errno: .init(rawValue: Glibc.errno), detail: "remove \"\(path)\"")
    }
    defer { Glibc.close(fd) }
    try removeTree(in: fd, name, path: path)
}

/// `(dirname, basename)` of a path without a trailing slash; `("/", name)` at the top.
func splitPath(_ path: String) -> (parent: String, name: String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    let parent = String(path[..<slash])
    return (parent.isEmpty ? "/" : parent, String(path[path.index(after: slash)...]))
}

/// `mkdir -p` with mode 0700 for the store's own directories.
func makeDirectories(_ path: String, mode: mode_t = 0o700) throws(LayerError) {
    var current = ""
    for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, mode) != 0 && Glibc.errno != EEXIST {
            throw LayerError(code: .io, entry: current, errno: .init(rawValue: Glibc.errno),
                             detail: "create directory \"\(current)\"")
        }
    }
}

/// `lstat` of `name` in `parent`, or `nil` when it does not exist.
func statEntry(in parent: Int32, _ name: String, path: String) throws(LayerError) -> stat? {
    var st = stat()
    if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { return st }
    if Glibc.errno == ENOENT || Glibc.errno == ENOTDIR { return nil }
    throw LayerError(code: .io, entry: path, errno: .init(rawValue: Glibc.errno), detail: "stat \"\(path)\"")
}
