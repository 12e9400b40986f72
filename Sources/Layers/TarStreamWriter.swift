// Writes layer tars: libarchive's pax writer makes the tar, whose bytes are hashed (the diff
// ID) and fed to a second libarchive writer in "raw" format with the gzip or zstd filter, whose
// output is hashed again (the blob digest) and written to the caller's fd. One pass, no
// temporary files.

import CArchive
import Crypto
import Glibc
public import SystemPackage
import SystemSupport

/// The identity of a layer blob written by ``Snapshot/writeDiff(to:compression:excluding:)`` or
/// ``exportFilesystem(of:to:compression:)``.
public struct DiffResult: Sendable, Hashable {
    /// The `sha256:` digest of the uncompressed tar: the image config's `rootfs.diff_ids` entry.
    public var diffID: String
    /// The `sha256:` digest of the blob as written (compressed): the manifest's layer digest.
    public var digest: String
    /// The blob's size in bytes, as written.
    public var size: Int64
    /// The blob's compression.
    public var compression: LayerCompression
    /// The OCI media type for the manifest's layer descriptor.
    public var mediaType: String { compression.ociMediaType }
}

final class TarStreamWriter {
    private let output: Int32
    private var tar: OpaquePointer?
    private var compressor: OpaquePointer?
    private var diffHasher = SHA256()
    private var blobHasher = SHA256()
    private var blobSize: Int64 = 0
    private var failure: LayerError?
    private let compression: LayerCompression
    /// Inodes with several links already written: (device, inode) → name in the archive.
    private var linked: [[UInt64]: String] = [:]
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)

    init(output: Int32, compression: LayerCompression) throws(LayerError) {
        self.output = output
        self.compression = compression
        try loadLibArchive()
        guard let tar = archive_write_new() else { throw LayerError(code: .io, detail: "create a tar writer") }
        self.tar = tar
        // pax "restricted": plain ustar headers unless an entry needs pax records (long names,
        // xattrs), like Docker's and umoci's writers.
        archive_write_set_format_pax_restricted(tar)
        // End the stream after the end-of-archive blocks instead of padding to 10 KiB, as Go's
        // archive/tar (Docker, umoci) does.
        archive_write_set_bytes_in_last_block(tar, 1)
        if compression != .none {
            guard let compressor = archive_write_new() else {
                throw LayerError(code: .io, detail: "create a \(compression) compressor")
            }
            self.compressor = compressor
            if compression == .gzip {
                archive_write_add_filter_gzip(compressor)
                // No timestamp in the gzip header, so the same tree gives the same digest.
                archive_write_set_filter_option(compressor, "gzip", "timestamp", nil)
            } else {
                archive_write_add_filter_zstd(compressor)
            }
            archive_write_set_format_raw(compressor)
            archive_write_set_bytes_per_block(compressor, 0)
            let opened = archive_write_open(compressor, Unmanaged.passUnretained(self).toOpaque(), nil, { _, context, data, length in
                guard let context, let data else { return -1 }
                return Unmanaged<TarStreamWriter>.fromOpaque(context).takeUnretainedValue().emit(data, length)
            }, nil)
            guard opened == ARCHIVE_OK else { throw LayerWriter.archiveError(compressor, "start the \(compression) stream") }
            let entry = archive_entry_new()
            defer { archive_entry_free(entry) }
            archive_entry_set_filetype(entry, Glibc.S_IFREG)
            guard archive_write_header(compressor, entry) == ARCHIVE_OK else {
                throw LayerWriter.archiveError(compressor, "start the \(compression) stream")
            }
        }
        let opened = archive_write_open(tar, Unmanaged.passUnretained(self).toOpaque(), nil, { _, context, data, length in
            guard let context, let data else { return -1 }
            return Unmanaged<TarStreamWriter>.fromOpaque(context).takeUnretainedValue().tarBytes(data, length)
        }, nil)
        guard opened == ARCHIVE_OK else { throw LayerWriter.archiveError(tar, "start the tar stream") }
    }

    deinit {
        if let tar { archive_write_free(tar) }
        if let compressor { archive_write_free(compressor) }
        buffer.deallocate()
    }

    /// Uncompressed tar bytes from libarchive.
    private func tarBytes(_ data: UnsafeRawPointer, _ length: Int) -> Int {
        diffHasher.update(bufferPointer: UnsafeRawBufferPointer(start: data, count: length))
        guard let compressor else { return emit(data, length) }
        let n = archive_write_data(compressor, data, length)
        if n < 0 { failure = failure ?? LayerWriter.archiveError(compressor, "compress the layer") }
        return n
    }

    /// Bytes of the blob as it goes to the output.
    private func emit(_ data: UnsafeRawPointer, _ length: Int) -> Int {
        // An uncompressed blob is the tar itself, whose digest the diff hasher already takes.
        if compressor != nil { blobHasher.update(bufferPointer: UnsafeRawBufferPointer(start: data, count: length)) }
        var written = 0
        while written < length {
            let n = write(output, data + written, length - written)
            if n < 0 && Glibc.errno == EINTR { continue }
            guard n > 0 else {
                failure = failure ?? LayerError(code: .io, errno: .init(rawValue: Glibc.errno), detail: "write the layer blob")
                return -1
            }
            written += n
        }
        blobSize += Int64(length)
        return length
    }

    /// Adds the object `name` of the directory `parent` as `path`, with its content.
    ///
    /// A socket is left out: tar has no entry type for it, and it means nothing without the
    /// process listening on it (Docker's archive.go skips sockets too, in export, diff and cp).
    func add(_ name: String, in parent: Int32, as path: String, _ st: stat) throws(LayerError) {
        if st.st_mode & S_IFMT == S_IFSOCK { return }
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, path)
        archive_entry_set_mode(entry, st.st_mode)
        archive_entry_set_uid(entry, la_int64_t(st.st_uid))
        archive_entry_set_gid(entry, la_int64_t(st.st_gid))
        archive_entry_set_mtime(entry, st.st_mtim.tv_sec, st.st_mtim.tv_nsec)
        let type = st.st_mode & S_IFMT
        var content: OwnedFD?
        let key = [UInt64(st.st_dev), UInt64(st.st_ino)]
        if type == S_IFREG, st.st_nlink > 1, let first = linked[key] {
            archive_entry_set_hardlink(entry, first)
        } else if type == S_IFREG {
            if st.st_nlink > 1 { linked[key] = path }
            archive_entry_set_size(entry, la_int64_t(st.st_size))
            content = try LayerError.from(try openRegularFile(name, in: parent, checked: st, path: path))
        } else if type == S_IFLNK {
            archive_entry_set_symlink(entry, try readLink(in: parent, name, path: path))
        } else if type == S_IFCHR || type == S_IFBLK {
            archive_entry_set_rdev(entry, st.st_rdev)
        }
        // A directory is opened with O_DIRECTORY, which the kernel checks before it calls any
        // driver's open, and O_NONBLOCK besides.
        let directory = type == S_IFDIR
            ? try? OwnedFD(opening: name, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK, at: parent) : nil
        let xattrs: [String: [UInt8]]
        if let fd = content?.raw ?? directory?.raw {
            xattrs = readXattrs(fd: fd, path: path)
        } else if type == S_IFDIR {
            xattrs = [:]  // gone or replaced since the walk saw it
        } else {
            xattrs = readXattrs(fd: nil, path: "/proc/self/fd/\(parent)/\(name)")
        }
        for (key, value) in xattrs.sorted(by: { $0.key < $1.key }) where !key.hasPrefix("trusted.overlay.") {
            value.withUnsafeBytes { archive_entry_xattr_add_entry(entry, key, $0.baseAddress, $0.count) }
        }
        try writeHeader(entry, path)
        guard let content else { return }
        while true {
            let n = try LayerError.from(try sys("read", path: path) { read(content.raw, buffer.baseAddress, buffer.count) })
            if n == 0 { break }
            guard archive_write_data(tar, buffer.baseAddress, n) == n else { throw currentError("write \"\(path)\"") }
        }
    }

    /// Adds an OCI whiteout for `path` (`dir/.wh.name`): an empty regular file, mode 0, as
    /// Docker and umoci write it.
    func addWhiteout(_ path: String) throws(LayerError) {
        let (parent, name) = splitPath(path)
        try addMarker((parent == "." ? "" : parent + "/") + ".wh." + name)
    }

    /// Adds the OCI opaque marker (`dir/.wh..wh..opq`) for the directory `path`.
    func addOpaque(_ path: String) throws(LayerError) {
        try addMarker(path + "/.wh..wh..opq")
    }

    private func addMarker(_ path: String) throws(LayerError) {
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, path)
        archive_entry_set_mode(entry, Glibc.S_IFREG)
        archive_entry_set_size(entry, 0)
        try writeHeader(entry, path)
    }

    private func writeHeader(_ entry: OpaquePointer?, _ path: String) throws(LayerError) {
        guard archive_write_header(tar, entry) >= ARCHIVE_WARN else { throw currentError("write \"\(path)\"") }
    }

    private func currentError(_ what: String) -> LayerError {
        if let failure { return failure }
        return tar.map { LayerWriter.archiveError($0, what) } ?? LayerError(code: .io, detail: what)
    }

    /// Ends the tar (and the compressed stream) and returns the blob's identity.
    func finish() throws(LayerError) -> DiffResult {
        guard archive_write_close(tar) == ARCHIVE_OK else { throw currentError("finish the tar stream") }
        if let compressor, archive_write_close(compressor) != ARCHIVE_OK {
            throw failure ?? LayerWriter.archiveError(compressor, "finish the \(compression) stream")
        }
        if let failure { throw failure }
        let diffID = digestString(diffHasher.finalize())
        return DiffResult(diffID: diffID, digest: compression == .none ? diffID : digestString(blobHasher.finalize()),
                          size: blobSize, compression: compression)
    }
}

/// Writes the whole tree at `directory` as a tar, like `docker export`.
///
/// Entries are named relative to `directory` (`bin/sh`, not `./bin/sh`), in sorted order; hard
/// links inside the tree are kept; nothing is interpreted (an overlay whiteout in the tree is
/// written as the device it is). `trusted.overlay.*` xattrs are left out.
///
/// Costs a read of every file in the tree.
///
/// - Parameters:
///   - directory: The tree to export, for example a snapshot's ``Snapshot/rootfs``.
///   - output: Where the tar goes; written from its current offset, not closed.
///   - compression: The compression of the output; `.none` for `docker export`'s plain tar,
///     `.gzip` to make the tar a layer blob directly (`docker import` of a directory).
/// - Returns: The digests and size of what was written.
/// - Throws: ``LayerError`` when reading the tree or writing fails.
@discardableResult
public func exportFilesystem(of directory: String, to output: FileDescriptor, compression: LayerCompression = .none)
    throws(LayerError) -> DiffResult
{
    let writer = try TarStreamWriter(output: output.rawValue, compression: compression)
    let root = try LayerError.from(try OwnedFD(opening: directory, flags: O_RDONLY | O_DIRECTORY))
    try walkTree(root.raw, path: "") { parent, name, path, st throws(LayerError) in
        try writer.add(name, in: parent, as: path, st)
        return true
    }
    return try writer.finish()
}

/// Visits every object below the directory `fd` in sorted order, parents before children,
/// without following symlinks. `visit` returns whether to descend into a directory.
func walkTree(
    _ fd: Int32, path: String,
    _ visit: (_ parent: Int32, _ name: String, _ path: String, _ st: stat) throws(LayerError) -> Bool
) throws(LayerError) {
    for entry in try LayerError.from(try directoryEntries(fd, path: path)).sorted(by: { $0.name < $1.name }) {
        let childPath = path.isEmpty ? entry.name : path + "/" + entry.name
        guard let st = try statEntry(in: fd, entry.name, path: childPath) else { continue }
        guard try visit(fd, entry.name, childPath, st), st.st_mode & S_IFMT == S_IFDIR else { continue }
        let child = try LayerError.from(try OwnedFD(opening: entry.name, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW, at: fd))
        try walkTree(child.raw, path: childPath, visit)
    }
}
