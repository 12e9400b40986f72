// One layer's unpack pipeline: a decompressor thread (libarchive's "raw" format reader with the
// layer's filter) inflates the blob, hashes the uncompressed tar for the diff ID and writes it
// into a pipe; the calling thread parses the tar from the pipe and applies it with
// LayerWriter. Inflating and writing files then overlap, which is where bsdtar and umoci,
// doing both on one thread, lose time.

import CArchive
import CSyscalls
import Crypto
import Glibc
import Synchronization
import SystemSupport

/// Where the decompressor reads the blob from.
enum BlobInput: Sendable {
    case file(String)
    case channel(ChunkChannel)
}

enum Unpacker {
    /// Size of the buffers between stages: large enough that the pipe and syscalls are not
    /// what limits throughput.
    static let bufferSize = 1 << 20

    /// Unpacks the blob into the empty directory `tree`.
    ///
    /// - Returns: The `sha256:` digest of the uncompressed tar and the bytes of file content.
    static func unpack(_ input: BlobInput, compression: LayerCompression, into tree: String)
        throws(LayerError) -> (diffID: String, size: Int64)
    {
        var fds: [Int32] = [-1, -1]
        _ = try LayerError.from(try sys("create a pipe") { ck_pipe_cloexec(&fds) })
        let readEnd = OwnedFD(fds[0])
        let writeEnd = fds[1]
        // A bigger pipe means fewer wake-ups between the stages; failure only costs speed.
        _ = fcntl(writeEnd, CK_F_SETPIPE_SZ, Int32(bufferSize))

        let stop = StopFlag()
        let digest = Mutex<Result<String, LayerError>?>(nil)
        let decompressor: JoinableThread
        do {
            decompressor = try LayerError.from(try JoinableThread {
                let result = Result { () throws(LayerError) -> String in
                    try decompress(input, compression: compression, into: writeEnd, stop: stop)
                }
                Glibc.close(writeEnd)
                digest.withLock { $0 = result }
            })
        } catch {
            Glibc.close(writeEnd)
            throw error
        }

        let applied = Result { () throws(LayerError) -> Int64 in
            let archive = try TarReader(fd: readEnd.raw)
            let writer = try LayerWriter(root: tree)
            try writer.apply(archive.pointer)
            return writer.contentSize
        }
        if case .failure = applied { stop.set() }
        // Read to the end whatever happened, so the decompressor never writes into a pipe
        // without a reader (SIGPIPE) and the diff ID covers the tar's trailing padding.
        drain(readEnd.raw)
        decompressor.join()
        if case .channel(let channel) = input { channel.cancel() }

        let diffID = try (digest.withLock { $0 } ?? .failure(LayerError(code: .io, detail: "decompressor ended without a result"))).get()
        return (diffID, try applied.get())
    }

    /// Reads `fd` to its end, discarding what it reads.
    static func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 || (n < 0 && Glibc.errno == EINTR) { continue }
            return
        }
    }

    /// Inflates `input` into `fd`, returning the digest of what was written.
    private static func decompress(_ input: BlobInput, compression: LayerCompression, into fd: Int32, stop: StopFlag)
        throws(LayerError) -> String
    {
        try loadLibArchive()
        guard let archive = archive_read_new() else { throw LayerError(code: .io, detail: "create an archive reader") }
        defer { archive_read_free(archive) }
        archive_read_support_format_raw(archive)
        let expectedFilter: Int32
        switch compression {
        case .none: expectedFilter = ARCHIVE_FILTER_NONE
        case .gzip:
            archive_read_support_filter_gzip(archive)
            expectedFilter = ARCHIVE_FILTER_GZIP
        case .zstd:
            archive_read_support_filter_zstd(archive)
            expectedFilter = ARCHIVE_FILTER_ZSTD
        }

        var source: OwnedFD?
        var context: Unmanaged<ChunkReader>?
        defer { context?.release() }
        let opened: Int32
        switch input {
        case .file(let path):
            let file = try LayerError.from(try OwnedFD(opening: path, flags: O_RDONLY))
            source = file
            opened = archive_read_open_fd(archive, file.raw, bufferSize)
        case .channel(let channel):
            let reader = Unmanaged.passRetained(ChunkReader(channel))
            context = reader
            opened = archive_read_open(archive, reader.toOpaque(), nil, { _, raw, buffer in
                guard let raw, let buffer else { return -1 }
                return Unmanaged<ChunkReader>.fromOpaque(raw).takeUnretainedValue().next(buffer)
            }, nil)
        }
        _ = source
        var hasher = SHA256()
        var entry: OpaquePointer?
        let header = opened == ARCHIVE_OK ? archive_read_next_header(archive, &entry) : opened
        if header == ARCHIVE_EOF { return digestString(hasher.finalize()) }
        guard header >= ARCHIVE_WARN else { throw LayerWriter.archiveError(archive, "read the \(compression) stream") }
        guard archive_filter_code(archive, 0) == expectedFilter else {
            throw LayerError(code: .invalidArchive, detail: "the blob is not \(compression)-compressed")
        }

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        while !stop.isSet {
            let n = archive_read_data(archive, buffer.baseAddress, bufferSize)
            if n == 0 { break }
            guard n > 0 else { throw LayerWriter.archiveError(archive, "decompress the \(compression) stream") }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hasher.update(bufferPointer: chunk)
            var written = 0
            while written < n {
                let w = try LayerError.from(try sys("write to the unpack pipe") { write(fd, chunk.baseAddress.map { $0 + written }, n - written) })
                written += w
            }
        }
        return digestString(hasher.finalize())
    }
}

/// Loads libarchive, which Berth maps only when it first reads or writes a tar (CArchive).
/// Every path that creates a libarchive reader or writer calls it first.
func loadLibArchive() throws(LayerError) {
    if let failure = ck_archive_load() { throw LayerError(code: .unsupported, detail: String(cString: failure)) }
}

/// Reads one tar stream from an fd with libarchive (ustar, pax and GNU tar).
final class TarReader {
    let pointer: OpaquePointer

    init(fd: Int32) throws(LayerError) {
        try loadLibArchive()
        guard let archive = archive_read_new() else { throw LayerError(code: .io, detail: "create a tar reader") }
        pointer = archive
        archive_read_support_format_tar(archive)
        guard archive_read_open_fd(archive, fd, Unpacker.bufferSize) == ARCHIVE_OK else {
            throw LayerWriter.archiveError(archive, "open the tar stream")
        }
    }

    deinit { archive_read_free(pointer) }
}

/// Set once by the writer when it fails, so the decompressor stops early.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// libarchive's read callback state for a ``ChunkChannel``: keeps the current chunk alive
/// until the next call, as libarchive requires.
private final class ChunkReader {
    let channel: ChunkChannel
    var current: [UInt8] = []

    init(_ channel: ChunkChannel) { self.channel = channel }

    func next(_ buffer: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        repeat {
            guard let chunk = channel.receive() else { return 0 }
            current = chunk
        } while current.isEmpty
        current.withUnsafeBytes { buffer.pointee = $0.baseAddress }
        return current.count
    }
}

/// `sha256:<hex>`.
func digestString(_ digest: SHA256.Digest) -> String {
    "sha256:" + digest.map { byte in
        let hex = String(byte, radix: 16)
        return byte < 16 ? "0" + hex : hex
    }.joined()
}
