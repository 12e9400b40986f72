// The copy driver: applies layer directories, bottom first, onto one plain directory, doing
// what overlay would do with their whiteouts (a 0/0 character device deletes the name below
// it; a `trusted.overlay.opaque=y` directory hides everything below it).

import CSyscalls
import Glibc
import SystemSupport

/// The device number of an overlay whiteout (a character device 0/0).
func isWhiteout(_ st: stat) -> Bool {
    st.st_mode & S_IFMT == S_IFCHR && st.st_rdev == 0
}

/// Whether the directory open as `fd` carries `trusted.overlay.opaque=y`.
func isOpaque(fd: Int32) -> Bool {
    readXattrs(fd: fd, path: "")[LayerWriter.opaqueXattr] == Array("y".utf8)
}

extension LayerStore {
    /// Copies the layer tree `source` onto `destination`.
    func copyLayer(_ source: String, into destination: String) throws(LayerError) {
        let from = try LayerError.from(try OwnedFD(opening: source, flags: O_RDONLY | O_DIRECTORY))
        let to = try LayerError.from(try OwnedFD(opening: destination, flags: O_RDONLY | O_DIRECTORY))
        var copier = TreeCopier(destinationRoot: to.raw)
        try copier.copyDirectory(from: from.raw, to: to.raw, path: "")
    }
}

/// Copies the directory at `path` inside the tree `root` into the empty directory
/// `destination`: its entries, then its own owner, mode, xattrs and times onto `destination`
/// (what Docker does when an empty volume is first mounted over image content).
///
/// `path` is resolved with `RESOLVE_IN_ROOT`, as the container will see it: `..` and
/// symlinks, absolute ones included, are followed but never leave `root`. Entries below it are
/// copied as they are (symlinks as symlinks, hard links kept). Runs on a thread of its own.
///
/// - Parameters:
///   - path: The directory's path inside `root` (`/etc`).
///   - root: The tree to read, such as a container's mounted root filesystem.
///   - destination: An existing, empty directory.
/// - Returns: Whether a directory was at `path` (`false`: nothing, or a non-directory, was
///   there, and nothing was copied).
/// - Throws: ``LayerError`` when reading or writing fails; `destination` may then hold part of
///   the tree.
package func copyDirectory(at path: String, inRoot root: String, into destination: String) async throws(LayerError)
    -> Bool
{
    try await BlockingPool.shared.run { () throws(LayerError) -> Bool in
        let tree = try LayerError.from(try OwnedFD(opening: root, flags: CK_O_PATH | O_DIRECTORY))
        let fd = openInRoot(tree.raw, path, flags: O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else {
            let err = Glibc.errno
            if err == ENOENT || err == ENOTDIR { return false }
            throw LayerError(code: .io, entry: path, errno: .init(rawValue: err), detail: "open \"\(path)\" in \"\(root)\"")
        }
        let source = OwnedFD(fd)
        let target = try LayerError.from(try OwnedFD(opening: destination, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW))
        var copier = TreeCopier(destinationRoot: target.raw)
        try copier.copyDirectory(from: source.raw, to: target.raw, path: "")
        var st = stat()
        _ = try LayerError.from(try sys("stat", path: path) { fstat(source.raw, &st) })
        try copier.copyMetadata(st, xattrs: readXattrs(fd: source.raw, path: path), to: target.raw, path: path)
        return true
    }
}

/// Copies one tree onto another with fd-relative calls, keeping hard links, owners, modes,
/// xattrs and times.
struct TreeCopier {
    let destinationRoot: Int32
    /// Copies overlay's own marks as they are (whiteouts as 0/0 devices, `trusted.overlay.*`
    /// xattrs) instead of applying them: for an upper directory that is to be one again.
    let verbatim: Bool
    /// Gives each copy the owner its owner maps to (an id-shifted layer), instead of the same.
    let owners: OwnerShift?
    /// Inodes with several links already copied: (device, inode) → path in the destination.
    private var linked: [[UInt64]: String] = [:]

    init(destinationRoot: Int32, verbatim: Bool = false, owners: OwnerShift? = nil) {
        self.destinationRoot = destinationRoot
        self.verbatim = verbatim
        self.owners = owners
    }

    /// The owner a copy of a file owned by `st`'s ids gets.
    private func owner(_ st: stat) -> (uid: UInt32, gid: UInt32) {
        guard let owners else { return (st.st_uid, st.st_gid) }
        return (owners.shifted(st.st_uid), owners.shifted(st.st_gid))
    }

    mutating func copyDirectory(from source: Int32, to destination: Int32, path: String) throws(LayerError) {
        for entry in try LayerError.from(try directoryEntries(source, path: path)) {
            let name = entry.name
            let entryPath = path.isEmpty ? name : path + "/" + name
            guard let st = try statEntry(in: source, name, path: entryPath) else { continue }
            if isWhiteout(st) && !verbatim {
                try LayerError.from(try removeTree(in: destination, name, path: entryPath))
                continue
            }
            let existing = try statEntry(in: destination, name, path: entryPath)
            if let existing, !(existing.st_mode & S_IFMT == S_IFDIR && st.st_mode & S_IFMT == S_IFDIR) {
                try LayerError.from(try removeTree(in: destination, name, path: entryPath))
            }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                let from = try LayerError.from(try OwnedFD(opening: name, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW, at: source))
                if existing == nil {
                    _ = try LayerError.from(try sys("create directory", path: entryPath) { mkdirat(destination, name, 0o700) })
                } else if isOpaque(fd: from.raw) {
                    try LayerError.from(try emptyDirectory(in: destination, name, path: entryPath))
                }
                let to = try LayerError.from(try OwnedFD(opening: name, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW, at: destination))
                try copyDirectory(from: from.raw, to: to.raw, path: entryPath)
                try copyMetadata(st, xattrs: readXattrs(fd: from.raw, path: entryPath), to: to.raw, path: entryPath)
            case S_IFREG:
                let key = [UInt64(st.st_dev), UInt64(st.st_ino)]
                if st.st_nlink > 1, let first = linked[key] {
                    _ = try LayerError.from(try sys("link", path: entryPath) { linkat(destinationRoot, first, destination, name, 0) })
                    continue
                }
                let from = try LayerError.from(try openRegularFile(name, in: source, checked: st, path: entryPath))
                let to = try LayerError.from(try OwnedFD(opening: name, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600,
                                     at: destination))
                try copyContent(from: from.raw, to: to.raw, size: Int64(st.st_size), path: entryPath)
                try copyMetadata(st, xattrs: readXattrs(fd: from.raw, path: entryPath), to: to.raw, path: entryPath)
                if st.st_nlink > 1 { linked[key] = entryPath }
            default:
                try copyNode(st, name: name, from: source, to: destination, path: entryPath)
            }
        }
    }

    private func copyNode(_ st: stat, name: String, from source: Int32, to destination: Int32, path: String)
        throws(LayerError)
    {
        if st.st_mode & S_IFMT == S_IFLNK {
            let target = try readLink(in: source, name, path: path)
            _ = try LayerError.from(try sys("create symlink", path: path) { symlinkat(target, destination, name) })
        } else {
            _ = try LayerError.from(try sys("create node", path: path) { mknodat(destination, name, st.st_mode, st.st_rdev) })
            try setNodeMode(name, in: destination, mode: st.st_mode, device: st.st_rdev, path: path)
        }
        let (uid, gid) = owner(st)
        _ = try LayerError.from(try sys("set owner of", path: path) { fchownat(destination, name, uid, gid, AT_SYMLINK_NOFOLLOW) })
        let xattrs = readXattrs(fd: nil, path: "/proc/self/fd/\(source)/\(name)")
        let target = "/proc/self/fd/\(destination)/\(name)"
        for (key, value) in xattrs where verbatim || !key.hasPrefix("trusted.overlay.") {
            _ = try LayerError.from(try sys("set xattr \(key) on", path: path) { value.withUnsafeBytes { ck_lsetxattr(target, key, $0.baseAddress, $0.count, 0) } })
        }
        _ = try LayerError.from(try sys("set times of", path: path) { utimensat(destination, name, [st.st_atim, st.st_mtim], AT_SYMLINK_NOFOLLOW) })
    }

    func copyMetadata(_ st: stat, xattrs: [String: [UInt8]], to fd: Int32, path: String) throws(LayerError) {
        // A directory merged onto a lower one takes the upper one's metadata whole, as in an
        // overlay mount: xattrs the upper directory lacks go.
        for key in readXattrs(fd: fd, path: path).keys where xattrs[key] == nil {
            _ = try LayerError.from(try sys("remove xattr \(key) from", path: path) { ck_fremovexattr(fd, key) })
        }
        let (uid, gid) = owner(st)
        _ = try LayerError.from(try sys("set owner of", path: path) { fchown(fd, uid, gid) })
        _ = try LayerError.from(try sys("set mode of", path: path) { fchmod(fd, st.st_mode & 0o7777) })
        for (key, value) in xattrs where verbatim || !key.hasPrefix("trusted.overlay.") {
            _ = try LayerError.from(try sys("set xattr \(key) on", path: path) { value.withUnsafeBytes { ck_fsetxattr(fd, key, $0.baseAddress, $0.count, 0) } })
        }
        _ = try LayerError.from(try sys("set times of", path: path) { futimens(fd, [st.st_atim, st.st_mtim]) })
    }
}

/// Copies at most `size` bytes with copy_file_range(2), which shares extents (reflink) on file
/// systems that support it (Btrfs, XFS) and copies in the kernel elsewhere; falls back to
/// read/write where the kernel refuses (a copy across file system types, such as a container's
/// overlay to the host's ext4).
///
/// `size` is what the caller checked: a file that a running container keeps growing is not
/// copied past it, on either path.
func copyContent(from source: Int32, to destination: Int32, size: Int64, path: String) throws(LayerError) {
    var remaining = size
    while remaining > 0 {
        let n = ck_copy_file_range(source, destination, Int(min(remaining, 1 << 30)))
        if n > 0 {
            remaining -= Int64(n)
            continue
        }
        if n == 0 { break }
        if Glibc.errno == EINTR { continue }
        guard [EXDEV, ENOSYS, EINVAL, EOPNOTSUPP].contains(Glibc.errno) else {
            throw LayerError(code: .io, entry: path, errno: .init(rawValue: Glibc.errno), detail: "copy \"\(path)\"")
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while remaining > 0 {
            let want = Int(min(remaining, Int64(buffer.count)))
            let got = try LayerError.from(try sys("read", path: path) { buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, want) } })
            if got == 0 { return }
            remaining -= Int64(got)
            var written = 0
            while written < got {
                written += try LayerError.from(try sys("write", path: path) {
                    buffer.withUnsafeBytes { write(destination, $0.baseAddress.map { $0 + written }, got - written) }
                })
            }
        }
    }
}

/// The target of the symlink `name` in `directory`.
func readLink(in directory: Int32, _ name: String, path: String) throws(LayerError) -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = try LayerError.from(try sys("read link", path: path) { readlinkat(directory, name, &buffer, buffer.count - 1) })
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
