package import Glibc

/// The names in the directory open as `fd` (without `.` and `..`), each with its `d_type`.
///
/// The fd is duplicated for `fdopendir`, so the caller keeps ownership of `fd`.
///
/// - Throws: ``SystemError`` when the directory cannot be read.
package func directoryEntries(_ fd: Int32, path: String) throws(SystemError) -> [(name: String, type: UInt8)] {
    let copy = try sys("read directory", path: path) { openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    guard let dir = fdopendir(copy) else {
        let error = SystemError.current("read directory \"\(path)\"", path: path)
        close(copy)
        throw error
    }
    defer { closedir(dir) }
    var result: [(name: String, type: UInt8)] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name == "." || name == ".." { continue }
        result.append((name, entry.pointee.d_type))
    }
    return result
}

/// The names in the directory at `path` (without `.` and `..`), each with its `d_type`: the one
/// directory lister.
///
/// - Throws: ``SystemError`` naming `path` (`ENOENT` when it does not exist).
package func directoryEntries(atPath path: String) throws(SystemError) -> [(name: String, type: UInt8)] {
    let fd = try OwnedFD(opening: path, flags: O_RDONLY | O_DIRECTORY)
    return try directoryEntries(fd.raw, path: path)
}

/// `(dirname, basename)` of a path without a trailing slash; `("/", name)` at the top and
/// `(".", path)` for a bare name.
package func splitPath(_ path: String) -> (parent: String, name: String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    let parent = String(path[..<slash])
    return (parent.isEmpty ? "/" : parent, String(path[path.index(after: slash)...]))
}

/// `mkdir -p`: creates `path` and every missing directory above it with `mode`; existing ones
/// are left as they are. A relative `path` is taken from the working directory.
///
/// Tries `path` itself first and climbs only on `ENOENT`, so a directory that exists (the
/// stores' directories on every open) costs one `mkdir`, not one per component from `/`.
///
/// - Throws: ``SystemError`` naming the directory that could not be created.
package func makeDirectories(_ path: String, mode: mode_t) throws(SystemError) {
    if mkdir(path, mode) == 0 || Glibc.errno == EEXIST { return }
    guard Glibc.errno == ENOENT else { throw SystemError.current("create directory \"\(path)\"", path: path) }
    let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
    let (parent, _) = splitPath(trimmed)
    // "/" and "." always exist: ENOENT below them is the kernel's answer, not a missing parent.
    guard parent != "/", parent != ".", parent != trimmed else {
        throw SystemError.current("create directory \"\(path)\"", path: path)
    }
    try makeDirectories(parent, mode: mode)
    if mkdir(path, mode) != 0 && Glibc.errno != EEXIST {
        throw SystemError.current("create directory \"\(path)\"", path: path)
    }
}
