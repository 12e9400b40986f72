// `docker cp` over directory trees: one path of a tree as a tar stream, a tar stream unpacked
// into a directory of a tree, and a path copied from one tree to another with cp's rules. Every
// path is resolved with openat2(RESOLVE_IN_ROOT) below the tree's root (a container's root
// filesystem, or `/` for the host), so a symlink in the tree means what it means to the
// container; the tar is written by TarStreamWriter and applied by LayerWriter, the same code as
// layer export and the secure unpack.

import CSyscalls
import Glibc
package import SystemPackage
import SystemSupport

/// What a path below a root names, looked up with ``lookUpPath(_:in:)``.
package struct PathInfo: Sendable {
    /// Whether the path names a directory, after following a symlink in its last component.
    package var isDirectory: Bool
}

/// Looks up `path` below `root` as a copy sees it: symlinks before the last component are
/// followed inside the root; the last component exists when it is there, even as a dangling
/// symlink.
///
/// - Parameters:
///   - path: The path as the tree sees it (`/etc/hostname`).
///   - root: The tree's root directory.
/// - Returns: What `path` names, or `nil` when it does not exist.
/// - Throws: ``LayerError`` when the root cannot be opened or the lookup fails otherwise.
package func lookUpPath(_ path: String, in root: String) throws(LayerError) -> PathInfo? {
    let rootFD = try LayerError.from(try OwnedFD(opening: root, flags: CK_O_PATH | O_DIRECTORY))
    let located: (parent: OwnedFD, name: String, top: String)
    do throws(LayerError) {
        located = try locate(path, in: rootFD.raw)
    } catch where error.code == .notFound {
        return nil
    }
    guard let st = try statEntry(in: located.parent.raw, located.name, path: path) else { return nil }
    if st.st_mode & S_IFMT != S_IFLNK { return PathInfo(isDirectory: st.st_mode & S_IFMT == S_IFDIR) }
    let target = openInRoot(rootFD.raw, relativePath(path), flags: CK_O_PATH | O_DIRECTORY)
    if target >= 0 { Glibc.close(target) }
    return PathInfo(isDirectory: target >= 0)
}

/// Writes the file or directory tree at `path` below `root` as a tar stream, as
/// `docker cp CONTAINER:path -` does.
///
/// The archive's top entry is named after the last component of `path` (`hostname` for
/// `/etc/hostname`), or `.` when `path` ends in `/.` or is `/`, so that the archive holds a
/// directory's contents. A symlink as the last component is archived as the symlink; a path
/// ending in `/` is followed to the directory it names. Symlinks before the last component are
/// followed inside `root`.
///
/// The kernel's own file systems (`/proc`, `/sys`, `/dev/pts`, …) mounted in the tree are
/// archived as their empty mount point, not walked: a running container's view
/// (`/proc/<pid>/root`) and the host's `/` have them, and their files are the kernel's state,
/// not files to copy.
///
/// Costs a read of every file in the tree.
///
/// - Parameters:
///   - path: The path as the tree sees it.
///   - root: The tree's root directory: a container's root filesystem, a running container's
///     `/proc/<pid>/root`, or `/`.
///   - output: Where the tar goes; written from its current offset, not closed.
///   - top: The name of the archive's top entry, instead of the one derived from `path`.
///   - followingLink: Whether a symlink as the last component is followed (inside `root`)
///     and its target archived under the symlink's name (`docker cp -L`).
/// - Throws: ``LayerError`` with ``LayerError/Code/notFound`` and ``LayerError/entry`` `path`
///   when `path` does not exist, or when reading or writing fails.
package func archivePath(
    _ path: String, in root: String, to output: FileDescriptor, as top: String? = nil, followingLink: Bool = false
) throws(LayerError) {
    let rootFD = try LayerError.from(try OwnedFD(opening: root, flags: CK_O_PATH | O_DIRECTORY))
    let (parent, name, derivedTop) = try locate(path, in: rootFD.raw, followingLink: followingLink)
    guard let st = try statEntry(in: parent.raw, name, path: path) else {
        throw LayerError(code: .notFound, entry: path, errno: .noSuchFileOrDirectory, detail: "look up \"\(path)\"")
    }
    let topName = top ?? derivedTop
    let writer = try TarStreamWriter(output: output.rawValue, compression: .none)
    try writer.add(name, in: parent.raw, as: topName, st)
    if st.st_mode & S_IFMT == S_IFDIR && !isKernelFileSystem(name, in: parent.raw, st, below: st) {
        let directory = try LayerError.from(try OwnedFD(opening: name, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW, at: parent.raw))
        try walkTree(directory.raw, path: topName) { parent, name, path, entry throws(LayerError) in
            try writer.add(name, in: parent, as: path, entry)
            return !isKernelFileSystem(name, in: parent, entry, below: st)
        }
    }
    _ = try writer.finish()
}

/// Creates the directory `path` below `root` and every missing directory above it (mode 0755,
/// owned by the calling process), as `mkdir -p` run in the tree would: each component is
/// resolved inside `root`, so a symlink in the tree cannot lead the creation out of it.
///
/// - Parameters:
///   - path: The directory as the tree sees it (`/srv/www`).
///   - root: The tree's root directory.
/// - Throws: ``LayerError``: ``LayerError/Code/invalidArgument`` when a component exists and is
///   not a directory, and others when the root cannot be opened or a creation fails.
package func makeDirectories(_ path: String, in root: String) throws(LayerError) {
    let rootFD = try LayerError.from(try OwnedFD(opening: root, flags: CK_O_PATH | O_DIRECTORY))
    var parent = try LayerError.from(try OwnedFD(resolving: "", inRoot: rootFD.raw, flags: CK_O_PATH | O_DIRECTORY))
    var done = ""
    for component in path.split(separator: "/").map(String.init) where component != "." {
        done += "/" + component
        if mkdirat(parent.raw, component, 0o755) != 0 && errno != EEXIST {
            throw LayerError(code: .io, entry: done, errno: Errno(rawValue: errno), detail: "make directory \"\(done)\"")
        }
        do throws(SystemError) {
            parent = try OwnedFD(resolving: done, inRoot: rootFD.raw, flags: CK_O_PATH | O_DIRECTORY)
        } catch where error.is(.notDirectory) || error.is(.noSuchFileOrDirectory) {
            throw LayerError(code: .invalidArgument, entry: done, errno: error.errno,
                             detail: "make directory \"\(path)\": \"\(done)\" is not a directory")
        } catch {
            throw LayerError(code: .io, entry: done, errno: error.errno, detail: "open \"\(done)\": \(error)")
        }
    }
}

/// Unpacks a tar stream into the directory `path` below `root`, as `docker cp - CONTAINER:path`
/// does.
///
/// Entry names are relative to `path`; `..` above it is refused, and absolute names, symlinks
/// and hard link targets are resolved inside `root`, never outside it (the secure unpack of
/// layers, with copy semantics: `.wh.` names are ordinary files, and a directory and a
/// non-directory never replace each other). Entries before a refused one stay written.
///
/// - Parameters:
///   - input: The tar stream; read up to the end of the archive, or up to a refused entry.
///   - path: The directory to unpack into, as the tree sees it; it must exist.
///   - root: The tree's root directory: a container's root filesystem, or `/`.
///   - rename: A top-level name of the archive and the name to write it as, to copy `src`
///     to a new name (`docker cp`'s rebase).
///   - preservingOwners: Whether files get the archive's owners (`docker cp --archive`); if
///     not, they belong to the calling process.
/// - Throws: ``LayerError``: ``LayerError/Code/notFound`` with ``LayerError/entry`` `path`
///   when `path` does not exist, ``LayerError/Code/invalidArgument`` when it is not a
///   directory, ``LayerError/Code/unsafeEntry`` for an entry that would land outside `path`'s
///   tree, and others when the archive is malformed or writing fails.
package func extractArchive(
    from input: FileDescriptor, into path: String, in root: String,
    renaming rename: (from: String, to: String)? = nil, preservingOwners: Bool
) throws(LayerError) {
    // The directory is resolved again below; a directory replaced meanwhile by a symlink still
    // resolves inside the root.
    guard let info = try lookUpPath(path, in: root) else {
        throw LayerError(code: .notFound, entry: path, errno: .noSuchFileOrDirectory, detail: "look up \"\(path)\"")
    }
    guard info.isDirectory else {
        throw LayerError(code: .invalidArgument, entry: path, errno: .notDirectory, detail: "extract into \"\(path)\"")
    }
    let archive = try TarReader(fd: input.rawValue)
    let writer = try LayerWriter(root: root, mode: .copy(preservingOwners: preservingOwners), base: relativePath(path),
                                 renaming: rename)
    try writer.apply(archive.pointer)
}

/// Copies `source` below `sourceRoot` to `destination` below `destinationRoot` with
/// `docker cp`'s rules, through a tar stream between two threads.
///
/// - A directory `destination` receives `source` under its own name (its contents, when
///   `source` ends in `/.`).
/// - Otherwise `source` is written as `destination`: a file replaces a file, a missing
///   `destination` is created in its existing parent directory.
/// - A directory is never copied onto a file, and a file is not copied to a missing
///   `destination` ending in `/`.
///
/// Costs a read and a write of every file in the tree.
///
/// - Parameters:
///   - source: The path to copy, as the source tree sees it.
///   - sourceRoot: The source tree's root: a container's root filesystem, or `/`.
///   - destination: Where it goes, as the destination tree sees it.
///   - destinationRoot: The destination tree's root.
///   - followingLink: Whether a symlink as the last component of `source` is followed
///     (`docker cp -L`).
///   - preservingOwners: Whether copies get the source's owners; if not, they belong to the
///     calling process.
/// - Throws: ``LayerError``: ``LayerError/Code/notFound`` when `source` or the destination's
///   parent directory does not exist, ``LayerError/Code/invalidArgument`` when the rules
///   forbid the copy, and others when reading or writing fails.
package func copyPath(
    _ source: String, in sourceRoot: String, to destination: String, in destinationRoot: String,
    followingLink: Bool = false, preservingOwners: Bool
) throws(LayerError) {
    let sourceRootFD = try LayerError.from(try OwnedFD(opening: sourceRoot, flags: CK_O_PATH | O_DIRECTORY))
    let (sourceParent, sourceName, top) = try locate(source, in: sourceRootFD.raw, followingLink: followingLink)
    guard let sourceStat = try statEntry(in: sourceParent.raw, sourceName, path: source) else {
        throw LayerError(code: .notFound, entry: source, errno: .noSuchFileOrDirectory, detail: "look up \"\(source)\"")
    }
    let sourceIsDirectory = sourceStat.st_mode & S_IFMT == S_IFDIR
    let target = try lookUpPath(destination, in: destinationRoot)
    let directory: String
    var rename: (from: String, to: String)?
    if target?.isDirectory == true {
        directory = destination
    } else {
        if target != nil && sourceIsDirectory {
            throw LayerError(code: .invalidArgument, entry: destination, errno: .notDirectory,
                             detail: "cannot copy directory \"\(source)\" to file \"\(destination)\"")
        }
        if target == nil && destination.hasSuffix("/") && !sourceIsDirectory {
            throw LayerError(code: .notFound, entry: destination, errno: .noSuchFileOrDirectory,
                             detail: "copy \"\(source)\" into directory \"\(destination)\", which does not exist")
        }
        let trimmed = trimmingSlashes(destination)
        let (parent, name) = splitPath(trimmed)
        directory = parent == "." ? "/" : parent
        rename = (top, name)
        guard try lookUpPath(directory, in: destinationRoot)?.isDirectory == true else {
            throw LayerError(code: .notFound, entry: destination, errno: .noSuchFileOrDirectory,
                             detail: "copy \"\(source)\" to \"\(destination)\": no directory \"\(directory)\"")
        }
    }
    // The archiver would walk into what the extractor writes, until the disk is full: the
    // host's `/` holds every container's root filesystem (`cp` refuses the same).
    if sourceIsDirectory, try isBelow(directory, in: destinationRoot, sourceStat) {
        throw LayerError(code: .invalidArgument, entry: destination,
                         detail: "cannot copy directory \"\(source)\" into itself, \"\(destination)\"")
    }

    var fds: [Int32] = [-1, -1]
    _ = try LayerError.from(try sys("create a pipe") { ck_pipe_cloexec(&fds) })
    let readEnd = OwnedFD(fds[0])
    let writeEnd = fds[1]
    let written = SendableResult()
    let archiver: JoinableThread
    do {
        archiver = try LayerError.from(try JoinableThread {
            written.set(Result { () throws(LayerError) -> Void in
                try archivePath(source, in: sourceRoot, to: FileDescriptor(rawValue: writeEnd), as: top,
                                followingLink: followingLink)
            })
            Glibc.close(writeEnd)
        })
    } catch {
        Glibc.close(writeEnd)
        throw error
    }
    let extracted = Result { () throws(LayerError) -> Void in
        try extractArchive(from: FileDescriptor(rawValue: readEnd.raw), into: directory, in: destinationRoot,
                           renaming: rename, preservingOwners: preservingOwners)
    }
    // Read to the end whatever happened, so the archiver never writes into a pipe without a
    // reader (SIGPIPE).
    Unpacker.drain(readEnd.raw)
    archiver.join()
    // A failed archiver truncates the stream; its error is the cause, the extractor's a symptom.
    try written.get()
    try extracted.get()
}

/// Whether the directory `name` in `parent` holds one of the kernel's own file systems (proc,
/// sysfs, devpts, mqueue, cgroup, …). Only a directory on another device than `top` (the
/// walk's top) can be a mount point, so most directories cost no call.
private func isKernelFileSystem(_ name: String, in parent: Int32, _ st: stat, below top: stat) -> Bool {
    guard st.st_mode & S_IFMT == S_IFDIR, st.st_dev != top.st_dev || name == "proc" || name == "sys" else { return false }
    let fd = openat(parent, name, CK_O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { Glibc.close(fd) }
    var type: UInt64 = 0
    guard ck_fs_type(fd, &type) == 0 else { return false }
    // <linux/magic.h>: proc, sysfs, devpts, mqueue, cgroup, cgroup2, securityfs, debugfs,
    // tracefs, bpf, pstore, configfs, binfmt_misc.
    let kernel: Set<UInt64> = [0x9fa0, 0x6265_6572, 0x1cd1, 0x1980_0202, 0x27e0eb, 0x6367_7270, 0x7363_6673,
                            0x6462_6720, 0x7472_6163, 0xcafe_4a11, 0x6165_676c, 0x6265_6570, 0x4249_4e4d]
    return kernel.contains(type & 0xffff_ffff)
}

/// Whether the directory `path` below `root` is the directory `ancestor` or below it, on the
/// host's tree: its `..` chain is followed up to the host's `/`, across mounts.
private func isBelow(_ path: String, in root: String, _ ancestor: stat) throws(LayerError) -> Bool {
    var hostRoot = stat()
    _ = try LayerError.from(try sys("stat", path: "/") { stat("/", &hostRoot) })
    let rootFD = try LayerError.from(try OwnedFD(opening: root, flags: CK_O_PATH | O_DIRECTORY))
    var current = try LayerError.from(try OwnedFD(resolving: relativePath(path), inRoot: rootFD.raw, flags: CK_O_PATH | O_DIRECTORY))
    while true {
        var st = stat()
        _ = try LayerError.from(try sys("stat", path: path) { fstat(current.raw, &st) })
        if st.st_dev == ancestor.st_dev && st.st_ino == ancestor.st_ino { return true }
        if st.st_dev == hostRoot.st_dev && st.st_ino == hostRoot.st_ino { return false }
        let parent = OwnedFD(try LayerError.from(try sys("open the parent of", path: path) { openat(current.raw, "..", CK_O_PATH | O_DIRECTORY | O_CLOEXEC) }))
        var above = stat()
        _ = try LayerError.from(try sys("stat the parent of", path: path) { fstat(parent.raw, &above) })
        // The root of another mount namespace (a running container's `/proc/<pid>/root`) is
        // its own parent and never reaches the host's `/`.
        if above.st_dev == st.st_dev && above.st_ino == st.st_ino { return false }
        current = parent
    }
}

/// The result of the archiver thread of ``copyPath(_:in:to:in:followingLink:preservingOwners:)``.
private final class SendableResult: @unchecked Sendable {
    // Written by the archiver thread before it ends and read after joining it: the join
    // orders the two accesses.
    private var result: Result<Void, LayerError> = .success(())

    func set(_ value: Result<Void, LayerError>) { result = value }
    func get() throws(LayerError) { try result.get() }
}

/// `path` without leading and trailing slashes: relative to the root, empty for the root.
func relativePath(_ path: String) -> String {
    String(trimmingSlashes(path).drop { $0 == "/" })
}

private func trimmingSlashes(_ path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
    return String(trimmed)
}

/// Where `path` is below the root `rootFD`, as ``locate(_:in:)`` finds it, after following a
/// symlink in the last component when `followingLink` (`docker cp -L`). The top entry keeps
/// the name of `path`, as Docker names it.
private func locate(_ path: String, in rootFD: Int32, followingLink: Bool)
    throws(LayerError) -> (parent: OwnedFD, name: String, top: String)
{
    var located = try locate(path, in: rootFD)
    guard followingLink else { return located }
    var current = path
    // Linux's limit on symlinks followed in one lookup (MAXSYMLINKS).
    for _ in 0..<40 {
        guard let st = try statEntry(in: located.parent.raw, located.name, path: current), st.st_mode & S_IFMT == S_IFLNK
        else { return (located.parent, located.name, located.top) }
        let target = try readLink(in: located.parent.raw, located.name, path: current)
        // Relative targets are relative to the link's directory; the joined path is resolved
        // inside the root again, so `..` and absolute targets stay clamped to it.
        current = target.hasPrefix("/") ? target : splitPath(trimmingSlashes(current)).parent + "/" + target
        let top = located.top
        located = try locate(current, in: rootFD)
        located.top = top
    }
    throw LayerError(code: .io, entry: path, errno: .tooManySymbolicLinkLevels, detail: "follow \"\(path)\"")
}

/// Where `path` is below the root `rootFD`: its parent directory (resolved inside the root),
/// its name in that directory (`.` for a directory named by a path ending in `/`, `/.` or
/// `..`), and the name of the archive's top entry.
private func locate(_ path: String, in rootFD: Int32) throws(LayerError) -> (parent: OwnedFD, name: String, top: String) {
    guard !path.isEmpty else {
        throw LayerError(code: .invalidArgument, entry: path, detail: "copy an empty path")
    }
    let trimmed = trimmingSlashes(path)
    let (parentPath, name) = splitPath(trimmed)
    let followFinal = path.hasSuffix("/") || name == "." || name == ".." || trimmed == "/"
    let directoryPath = followFinal ? trimmed : parentPath
    let fd = openInRoot(rootFD, relativePath(directoryPath == "." ? "" : directoryPath), flags: CK_O_PATH | O_DIRECTORY)
    guard fd >= 0 else {
        let err = Errno(rawValue: Glibc.errno)
        throw LayerError(code: err == .noSuchFileOrDirectory || err == .notDirectory ? .notFound : .io, entry: path,
                         errno: err, detail: "look up \"\(path)\"")
    }
    guard followFinal else { return (OwnedFD(fd), name, name) }
    // `dir/.` (and `/`) archive a directory's contents; `dir/` and `dir/..` the directory,
    // named as the lexically cleaned path names it (Go's filepath.Base(filepath.Clean), as
    // Docker names it).
    let top = name == "." ? "." : LayerWriter.components(trimmed)?.last ?? "."
    return (OwnedFD(fd), ".", top)
}
