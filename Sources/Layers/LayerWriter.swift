// The secure tar applier: every entry is created with *at calls relative to directory fds that
// were resolved inside the layer's root by openat2(RESOLVE_IN_ROOT), so `..`, absolute paths
// and symlinks (from the archive or planted by an earlier entry) are all interpreted as the
// container would see them, clamped at the root. libarchive only parses: it never writes by
// path (no archive_write_disk), which is the design runc/umoci and containerd moved to after
// the tar-slip CVEs (CVE-2018-15664 class).

import CArchive
import CSyscalls
import Glibc
import SystemSupport

/// Applies one layer tar, read from an open libarchive reader, into a layer directory.
///
/// OCI whiteouts become overlay whiteouts (image-spec layer.md "Whiteouts"; the overlay
/// kernel documentation): `.wh.<name>` a 0/0 character device `<name>`, `.wh..wh..opq` the
/// `trusted.overlay.opaque=y` xattr on the directory, because each layer lives in its own
/// directory and is stacked by overlay (or interpreted by the copy driver).
final class LayerWriter {
    /// How entries are written: as an image layer, or as `docker cp` extracts a copy.
    enum Mode {
        /// OCI whiteouts are interpreted, any entry replaces what is at its name, owners come
        /// from the archive.
        case layer
        /// Names are taken as they are (a `.wh.` name is a file like any other), a directory
        /// and a non-directory never replace each other (Docker's `NoOverwriteDirNonDir`),
        /// and owners come from the archive only when `preservingOwners`.
        case copy(preservingOwners: Bool)
    }

    private let root: OwnedFD
    private let mode: Mode
    /// The directory (relative to the root, resolved inside it) that entry names are relative
    /// to; empty for the root itself.
    private let base: String
    /// A top-level name of the archive and the name it is written as (`docker cp`'s rebase of
    /// `src` onto a new destination name).
    private let rename: (from: String, to: String)?
    /// The parent directory of the previous entry, reused while entries stay in one directory
    /// (tar streams list a directory's files together). Dropped whenever anything is removed,
    /// since a removal is the only way an already-resolved directory can stop being the one
    /// its path names.
    private var cachedParent: (path: String, fd: OwnedFD)?
    /// A dropped ``cachedParent`` whose fd the current entry may still be using: closed when
    /// the next entry starts, not in the middle of the removal that dropped it.
    private var retiredParent: OwnedFD?
    /// Directory times are set after the whole stream, since creating children changes them.
    private var directoryTimes: [(path: String, times: [timespec])] = []
    /// Bytes of regular file content written.
    private(set) var contentSize: Int64 = 0

    /// The xattr overlayfs reads to make a directory hide the layers below it.
    static let opaqueXattr = "trusted.overlay.opaque"
    private static let whiteoutPrefix = ".wh."
    private static let opaqueMarker = ".wh..wh..opq"

    /// - Parameters:
    ///   - root: The directory that `..`, absolute names and symlinks are clamped to: the
    ///     empty layer directory, or a container's root filesystem.
    ///   - mode: Layer or copy semantics.
    ///   - base: The directory below `root` that entry names are relative to.
    ///   - rename: A top-level archive name and the name to write it as.
    init(root path: String, mode: Mode = .layer, base: String = "", renaming rename: (from: String, to: String)? = nil)
        throws(LayerError)
    {
        root = try LayerError.from(try OwnedFD(opening: path, flags: CK_O_PATH | O_DIRECTORY))
        self.mode = mode
        self.base = base
        self.rename = rename
    }

    private var whiteouts: Bool {
        if case .layer = mode { return true }
        return false
    }

    private var owners: Bool {
        if case .copy(let preservingOwners) = mode { return preservingOwners }
        return true
    }

    /// `parts` as a path relative to the root: below ``base``.
    private func rooted<S: Sequence<String>>(_ parts: S) -> String {
        ([base] + parts).filter { !$0.isEmpty }.joined(separator: "/")
    }

    /// The archive name `name` after ``rename``.
    private func renamed(_ name: String) -> String {
        guard let rename, name == rename.from || name.hasPrefix(rename.from + "/") else { return name }
        return rename.to + name.dropFirst(rename.from.count)
    }

    /// Reads every entry of `archive` and writes it below the root.
    func apply(_ archive: OpaquePointer) throws(LayerError) {
        var entry: OpaquePointer?
        while true {
            let rc = archive_read_next_header(archive, &entry)
            if rc == ARCHIVE_EOF { break }
            guard rc >= ARCHIVE_WARN, let entry else { throw Self.archiveError(archive, "read tar header") }
            try applyEntry(entry, archive)
        }
        for (path, times) in directoryTimes.reversed() {
            let fd = try LayerError.from(try OwnedFD(resolving: path, inRoot: root.raw, flags: O_RDONLY | O_DIRECTORY))
            _ = try LayerError.from(try sys("set times of", path: path) { futimens(fd.raw, times) })
        }
    }

    static func archiveError(_ archive: OpaquePointer, _ what: String) -> LayerError {
        let text = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
        return LayerError(code: .invalidArchive, detail: "\(what): \(text)")
    }

    /// Cleans a tar path lexically: empty, `.` and leading `/` components go, `..` removes the
    /// previous component. Returns `nil` when a `..` would climb above the root; such an entry
    /// can only land outside the layer, so it is refused rather than clamped (the rule;
    /// Docker's archive.go `breakoutError` does the same).
    static func components(_ name: String) -> [String]? {
        var parts: [String] = []
        for part in name.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..":
                if parts.popLast() == nil { return nil }
            default: parts.append(String(part))
            }
        }
        return parts
    }

    private func applyEntry(_ entry: OpaquePointer, _ archive: OpaquePointer) throws(LayerError) {
        retiredParent = nil
        guard let rawName = archive_entry_pathname(entry) else {
            throw LayerError(code: .invalidArchive, detail: "tar entry without a name")
        }
        let name = renamed(String(cString: rawName))
        guard let parts = Self.components(name) else {
            throw LayerError(code: .unsafeEntry, entry: name, detail: "entry \"\(name)\" escapes the root")
        }
        guard let base = parts.last else {
            // "./": the metadata of the directory the archive is unpacked into.
            return try applyDirectoryMetadata(entry, parent: try directory(self.base, entryName: name), name: ".",
                                              path: self.base, entryName: name)
        }
        let parentPath = rooted(parts.dropLast())
        let parent = try directory(parentPath, entryName: name)

        if whiteouts && base.hasPrefix(Self.whiteoutPrefix) {
            return try applyWhiteout(String(base.dropFirst(Self.whiteoutPrefix.count)), parent: parent,
                                     entryName: name)
        }

        if let rawTarget = archive_entry_hardlink(entry) {
            return try link(String(cString: rawTarget), parent: parent, name: base, entryName: name)
        }
        let mode = mode_t(archive_entry_mode(entry))
        let permissions = mode & 0o7777
        switch mode & S_IFMT {
        case S_IFDIR:
            if let existing = try statEntry(in: parent, base, path: name), existing.st_mode & S_IFMT != S_IFDIR {
                try replace(base, in: parent, entryName: name, existing: existing, byDirectory: true)
            }
            if mkdirat(parent, base, 0o700) != 0 && Glibc.errno != EEXIST {
                throw LayerError(code: .io, entry: name, errno: .init(rawValue: Glibc.errno),
                                 detail: "create directory \"\(name)\"")
            }
            try applyDirectoryMetadata(entry, parent: parent, name: base, path: rooted(parts), entryName: name)
        case S_IFREG:
            let file = OwnedFD(try create(name: base, in: parent, entryName: name) {
                openat(parent, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            })
            try writeContent(archive, to: file.raw, size: archive_entry_size(entry), entryName: name)
            if owners {
                _ = try LayerError.from(try sys("set owner of", path: name) { fchown(file.raw, archive_entry_uid(entry).id, archive_entry_gid(entry).id) })
            }
            // After chown: chown clears set-user-id bits and security.capability.
            _ = try LayerError.from(try sys("set mode of", path: name) { fchmod(file.raw, permissions) })
            try setXattrs(entry, entryName: name) { key, value, size in ck_fsetxattr(file.raw, key, value, size, 0) }
            _ = try LayerError.from(try sys("set times of", path: name) { futimens(file.raw, Self.times(entry)) })
        case S_IFLNK:
            let target = archive_entry_symlink(entry).map { String(cString: $0) } ?? ""
            _ = try create(name: base, in: parent, entryName: name) { symlinkat(target, parent, base) }
            try applyNodeMetadata(entry, parent: parent, name: base, entryName: name, chmod: nil)
        case S_IFCHR, S_IFBLK, S_IFIFO:
            let device = archive_entry_rdev(entry)
            _ = try create(name: base, in: parent, entryName: name) { mknodat(parent, base, mode, device) }
            try applyNodeMetadata(entry, parent: parent, name: base, entryName: name, chmod: (mode, device))
        default:
            throw LayerError(code: .unsupported, entry: name,
                             detail: "entry \"\(name)\" has unsupported type 0o\(String(mode & S_IFMT, radix: 8))")
        }
    }

    // MARK: - Paths

    /// The directory `path` (relative to the root, resolved inside it), created with mode 0755
    /// where missing, as tar does for parents an archive does not list.
    private func directory(_ path: String, entryName: String) throws(LayerError) -> Int32 {
        if path.isEmpty { return root.raw }
        if let cachedParent, cachedParent.path == path { return cachedParent.fd.raw }
        let fd = try resolveDirectory(path, entryName: entryName)
        cachedParent = (path, fd)
        return fd.raw
    }

    private func resolveDirectory(_ path: String, entryName: String) throws(LayerError) -> OwnedFD {
        let flags = CK_O_PATH | O_DIRECTORY
        var fd = openInRoot(root.raw, path, flags: flags)
        if fd < 0 && Glibc.errno == ENOENT && !path.isEmpty {
            let (parentPath, name) = splitPath(path)
            let parent = try resolveDirectory(parentPath == "." ? "" : parentPath, entryName: entryName)
            if mkdirat(parent.raw, name, 0o755) != 0 && Glibc.errno != EEXIST {
                throw LayerError(code: .io, entry: entryName, errno: .init(rawValue: Glibc.errno),
                                 detail: "create parent directory \"\(path)\" of \"\(entryName)\"")
            }
            fd = openInRoot(root.raw, path, flags: flags)
        }
        guard fd >= 0 else {
            throw LayerError(code: .io, entry: entryName, errno: .init(rawValue: Glibc.errno),
                             detail: "open parent directory \"\(path)\" of \"\(entryName)\"")
        }
        return OwnedFD(fd)
    }

    /// Runs `make`; if the name is taken, removes what is there (a later entry replaces an
    /// earlier one, as in tar) and runs it again.
    private func create(name: String, in parent: Int32, entryName: String, _ make: () -> Int32)
        throws(LayerError) -> Int32
    {
        var rc = make()
        if rc < 0 && Glibc.errno == EEXIST {
            if let existing = try statEntry(in: parent, name, path: entryName) {
                try replace(name, in: parent, entryName: entryName, existing: existing, byDirectory: false)
            }
            rc = make()
        }
        guard rc >= 0 else {
            throw LayerError(code: Glibc.errno == ENOENT ? .notFound : .io, entry: entryName,
                             errno: .init(rawValue: Glibc.errno), detail: "create \"\(entryName)\"")
        }
        return rc
    }

    /// Removes `existing` so that the entry can take its name; in copy mode a directory and a
    /// non-directory never replace each other, as `docker cp` refuses it.
    private func replace(_ name: String, in parent: Int32, entryName: String, existing: stat, byDirectory: Bool)
        throws(LayerError)
    {
        if case .copy = mode, (existing.st_mode & S_IFMT == S_IFDIR) != byDirectory {
            let what = byDirectory ? "non-directory \"\(entryName)\" with a directory" : "directory \"\(entryName)\" with a non-directory"
            throw LayerError(code: .invalidArgument, entry: entryName, detail: "cannot overwrite \(what)")
        }
        try remove(name, in: parent, entryName: entryName)
    }

    private func remove(_ name: String, in parent: Int32, entryName: String) throws(LayerError) {
        // `parent` may be the cached fd itself, which the caller uses again after the removal.
        if let cachedParent { retiredParent = cachedParent.fd }
        cachedParent = nil
        try LayerError.from(try removeTree(in: parent, name, path: entryName))
    }

    // MARK: - Entry kinds

    private func applyWhiteout(_ target: String, parent: Int32, entryName: String) throws(LayerError) {
        if target == String(Self.opaqueMarker.dropFirst(Self.whiteoutPrefix.count)) {
            let dir = OwnedFD(try LayerError.from(try sys("open opaque directory of", path: entryName) {
                openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            }))
            _ = try LayerError.from(try sys("mark opaque", path: entryName) { ck_fsetxattr(dir.raw, Self.opaqueXattr, "y", 1, 0) })
            return
        }
        // Other `.wh..wh.` names are reserved by the image spec for future use: skip them.
        if target.hasPrefix(Self.whiteoutPrefix) || target.isEmpty || target == "." || target == ".." { return }
        _ = try create(name: target, in: parent, entryName: entryName) {
            mknodat(parent, target, S_IFCHR, 0)
        }
    }

    private func link(_ linkName: String, parent: Int32, name: String, entryName: String) throws(LayerError) {
        let rawTarget = renamed(linkName)
        guard let targetParts = Self.components(rawTarget), let targetBase = targetParts.last else {
            throw LayerError(code: .unsafeEntry, entry: entryName,
                             detail: "entry \"\(entryName)\" is a hard link to \"\(rawTarget)\", outside the layer")
        }
        let targetParentPath = rooted(targetParts.dropLast())
        let targetParent = openInRoot(root.raw, targetParentPath, flags: CK_O_PATH | O_DIRECTORY)
        guard targetParent >= 0 else {
            throw LayerError(code: .notFound, entry: entryName, errno: .init(rawValue: Glibc.errno),
                             detail: "hard link \"\(entryName)\": target \"\(rawTarget)\" is not in the layer")
        }
        defer { Glibc.close(targetParent) }
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself, as tar does.
        _ = try create(name: name, in: parent, entryName: entryName) {
            linkat(targetParent, targetBase, parent, name, 0)
        }
    }

    private func writeContent(_ archive: OpaquePointer, to fd: Int32, size: Int64, entryName: String)
        throws(LayerError)
    {
        var block: UnsafeRawPointer?
        var length = 0
        var offset: la_int64_t = 0
        var end: Int64 = 0
        while true {
            let rc = archive_read_data_block(archive, &block, &length, &offset)
            if rc == ARCHIVE_EOF { break }
            guard rc >= ARCHIVE_WARN else {
                throw Self.archiveError(archive, "read \"\(entryName)\"").with(entry: entryName)
            }
            var written = 0
            while written < length, let block {
                let n = try LayerError.from(try sys("write", path: entryName) {
                    pwrite(fd, block + written, length - written, off_t(offset) + off_t(written))
                })
                written += n
            }
            end = max(end, offset + Int64(length))
        }
        // Sparse files end in a hole that no data block covers.
        if end < size { _ = try LayerError.from(try sys("extend sparse file", path: entryName) { ftruncate(fd, off_t(size)) }) }
        contentSize += size
    }

    private func applyDirectoryMetadata(
        _ entry: OpaquePointer, parent: Int32, name: String, path: String, entryName: String
    ) throws(LayerError) {
        let dir = OwnedFD(try LayerError.from(try sys("open directory", path: entryName) {
            openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        }))
        if owners {
            _ = try LayerError.from(try sys("set owner of", path: entryName) { fchown(dir.raw, archive_entry_uid(entry).id, archive_entry_gid(entry).id) })
        }
        _ = try LayerError.from(try sys("set mode of", path: entryName) { fchmod(dir.raw, mode_t(archive_entry_mode(entry)) & 0o7777) })
        try setXattrs(entry, entryName: entryName) { key, value, size in ck_fsetxattr(dir.raw, key, value, size, 0) }
        directoryTimes.append((path, Self.times(entry)))
    }

    /// Owner, mode, xattrs and times of a symlink, device or fifo, which cannot be opened for
    /// writing: set through the parent fd and the name, never following the name.
    private func applyNodeMetadata(
        _ entry: OpaquePointer, parent: Int32, name: String, entryName: String, chmod node: (mode: mode_t, device: dev_t)?
    ) throws(LayerError) {
        if owners {
            _ = try LayerError.from(try sys("set owner of", path: entryName) {
                fchownat(parent, name, archive_entry_uid(entry).id, archive_entry_gid(entry).id, AT_SYMLINK_NOFOLLOW)
            })
        }
        // mknodat's mode is reduced by the umask. A symlink put at the name meanwhile (the tree
        // may be a running container's) must not take the mode onto its target.
        if let node {
            try setNodeMode(name, in: parent, mode: node.mode, device: node.device, path: entryName)
        }
        // The parent's /proc/self/fd link leads to the already-resolved directory; lsetxattr
        // does not follow `name`.
        let path = "/proc/self/fd/\(parent)/\(name)"
        try setXattrs(entry, entryName: entryName) { key, value, size in ck_lsetxattr(path, key, value, size, 0) }
        _ = try LayerError.from(try sys("set times of", path: entryName) { utimensat(parent, name, Self.times(entry), AT_SYMLINK_NOFOLLOW) })
    }

    /// Sets the entry's xattrs with `set`. `trusted.overlay.*` names are dropped: only the
    /// whiteout translation may set them, or a layer could plant overlay redirects or
    /// opaque markers that change how other layers are seen.
    private func setXattrs(
        _ entry: OpaquePointer, entryName: String,
        _ set: (UnsafePointer<CChar>, UnsafeRawPointer?, Int) -> Int32
    ) throws(LayerError) {
        guard archive_entry_xattr_reset(entry) > 0 else { return }
        var key: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while archive_entry_xattr_next(entry, &key, &value, &size) == ARCHIVE_OK {
            guard let key else { continue }
            let name = String(cString: key)
            if name.hasPrefix("trusted.overlay.") { continue }
            _ = try LayerError.from(try sys("set xattr \(name) on", path: entryName) { set(key, value, size) })
        }
    }

    private static func times(_ entry: OpaquePointer) -> [timespec] {
        let mtime = timespec(tv_sec: archive_entry_mtime(entry), tv_nsec: archive_entry_mtime_nsec(entry))
        let atime = archive_entry_atime_is_set(entry) != 0
            ? timespec(tv_sec: archive_entry_atime(entry), tv_nsec: archive_entry_atime_nsec(entry)) : mtime
        return [atime, mtime]
    }
}

extension LayerError {
    func with(entry: String) -> LayerError {
        var copy = self
        copy.entry = entry
        return copy
    }
}

extension la_int64_t {
    /// A uid or gid from a tar header.
    fileprivate var id: UInt32 { UInt32(truncatingIfNeeded: self) }
}
