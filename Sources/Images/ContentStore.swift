import FoundationEssentials
import Glibc
public import Logging
import SystemSupport

/// Blobs and tags on disk, as an OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`).
///
/// Because the store *is* a layout, `skopeo inspect oci:<root>:<reference>` reads it. Tags are
/// `index.json` entries whose `org.opencontainers.image.ref.name` annotation holds the full
/// normalized reference (`docker.io/library/busybox:latest`).
///
/// Every blob is written to a temporary file under `.berth/ingest`, hashed and counted while it
/// streams in, fsynced and only then renamed into `blobs/`: a blob that does not verify is never
/// visible. `index.json` is replaced atomically under an exclusive `flock`, and writers hold a
/// shared lock that garbage collection takes exclusively, so several processes can share one
/// store.
public final class ContentStore: Sendable {
    /// The layout directory.
    public let root: String
    let logger: Logger

    /// Opens a layout directory, creating an empty layout if it does not exist.
    ///
    /// - Parameters:
    ///   - root: The layout directory, for example `<berth root>/content`.
    ///   - logger: Where store operations log.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/io`` when the directory cannot be created.
    public init(root: String, logger: Logger = Logger(label: "berth.images")) throws(ImageError) {
        self.root = root
        self.logger = logger
        try ImageError.from(try makeDirectories(root + "/blobs/sha256", mode: 0o755))
        try ImageError.from(try makeDirectories(root + "/.berth/ingest", mode: 0o755))
        let lock = try ImageError.from(try FileLock(indexLockPath))
        defer { lock.unlock() }
        if !FileIO.exists(root + "/oci-layout") {
            try ImageError.from(try writeAtomically(root + "/oci-layout", Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8)))
        }
        if !FileIO.exists(root + "/index.json") {
            let empty = try Self.encode(ImageIndex(manifests: []))
            try ImageError.from(try writeAtomically(root + "/index.json", empty))
        }
    }

    var indexLockPath: String { root + "/.berth/index.lock" }
    var gcLockPath: String { root + "/.berth/gc.lock" }

    // MARK: Blobs

    /// The path of a blob, whether or not it exists.
    ///
    /// - Parameter digest: The blob's digest.
    /// - Returns: `<root>/blobs/<algorithm>/<hex>`.
    public func path(of digest: Digest) -> String {
        "\(root)/blobs/\(digest.algorithm)/\(digest.encoded)"
    }

    /// Whether the store holds a blob.
    ///
    /// - Parameter digest: The blob's digest.
    /// - Returns: True if the blob file exists (blobs are only ever visible once verified).
    public func contains(_ digest: Digest) -> Bool {
        FileIO.exists(path(of: digest))
    }

    /// Reads a whole blob into memory; meant for manifests and configs, not layers.
    ///
    /// - Parameter digest: The blob's digest.
    /// - Returns: The bytes.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` if the blob is missing.
    public func read(_ digest: Digest) throws(ImageError) -> [UInt8] {
        do {
            return try ImageError.from(try readWholeFile(path(of: digest)))
        } catch where error.code == .notFound {
            throw ImageError(code: .notFound, digest: digest.description, detail: "blob is not in the store")
        }
    }

    /// Reads and decodes a JSON blob.
    func decode<T: Decodable>(_ type: T.Type, from digest: Digest) throws(ImageError) -> T {
        try Self.decode(type, from: read(digest), what: "blob \(digest)")
    }

    /// Stores bytes already in memory (a manifest, a config) as a blob.
    ///
    /// - Parameters:
    ///   - bytes: The content.
    ///   - mediaType: The media type for the returned descriptor.
    /// - Returns: The blob's descriptor.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/io`` when writing fails.
    @discardableResult
    public func write(_ bytes: [UInt8], mediaType: MediaType) throws(ImageError) -> Descriptor {
        let digest = Digest.sha256(of: bytes)
        let descriptor = Descriptor(mediaType: mediaType, digest: digest, size: Int64(bytes.count))
        if !contains(digest) {
            try ImageError.from(try writeAtomically(path(of: digest), bytes))
        }
        return descriptor
    }

    /// Stores a JSON document as a blob, with sorted keys so the same value always has the same digest.
    @discardableResult
    func write(json value: some Encodable, mediaType: MediaType) throws(ImageError) -> Descriptor {
        try write(Self.encode(value), mediaType: mediaType)
    }

    /// Starts (or resumes) writing a blob whose digest and size are known.
    ///
    /// The partial file survives a crash or a failed download, and the next ingest of the same
    /// digest continues from its end (after re-hashing what is there). Only one writer per digest
    /// at a time: others wait for the lock, then usually find the blob already present.
    ///
    /// - Parameter expected: The blob's descriptor.
    /// - Returns: The writer, or nil if the blob is already in the store.
    func ingest(_ expected: Descriptor) async throws(ImageError) -> BlobWriter? {
        if contains(expected.digest) { return nil }
        guard let hasher = DigestHasher(algorithm: expected.digest.algorithm) else {
            throw ImageError(code: .unsupported, digest: expected.digest.description, detail: "digest algorithm cannot be verified")
        }
        try ImageError.from(try makeDirectories("\(root)/blobs/\(expected.digest.algorithm)", mode: 0o755))
        let partial = "\(root)/.berth/ingest/\(expected.digest.algorithm)-\(expected.digest.encoded)"
        let lock = try await FileLock.acquiring(partial + ".lock")
        if contains(expected.digest) { return nil }
        return try BlobWriter(expected: expected, partial: partial, target: path(of: expected.digest), hasher: hasher, lock: lock)
    }

    /// Copies a file into the store as a blob, verifying it against its descriptor.
    ///
    /// - Parameters:
    ///   - file: The source file.
    ///   - expected: The descriptor the file must match.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/digestMismatch`` or
    ///   ``ImageError/Code/sizeMismatch`` if it does not; nothing is stored then.
    func copy(file: String, as expected: Descriptor) async throws(ImageError) {
        guard let writer = try await ingest(expected) else { return }
        // A whole layer is read, hashed and written here: on a thread of its own, not the pool.
        try await BlockingPool.shared.run { () throws(ImageError) in try Self.fill(writer, from: file) }
    }

    private static func fill(_ writer: BlobWriter, from file: String) throws(ImageError) {
        do throws(ImageError) {
            try writer.reset()
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw ImageError.io("open \(file)") }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw ImageError.io("read \(file)") }
                if n == 0 { break }
                try FileIO.withBytes(buffer, 0..<n) { (bytes) throws(ImageError) in try writer.write(bytes) }
            }
            try writer.commit()
        } catch {
            writer.discard()
            throw error
        }
    }

    /// Moves a file into the store as a blob, naming it by the digest of its content.
    ///
    /// For content whose digest nobody announced (a layer of a `docker save` archive, a layer
    /// Berth just wrote): one read hashes the file, then it is fsynced and renamed into place,
    /// so `file` must be on the store's file system (for example under `.berth/`). If the store
    /// already holds the blob, `file` is deleted instead.
    ///
    /// - Parameters:
    ///   - file: The file; it is gone afterwards.
    ///   - mediaType: The media type for the returned descriptor.
    /// - Returns: The blob's descriptor.
    func adopt(file: String, mediaType: MediaType) throws(ImageError) -> Descriptor {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.io("open \(file)") }
        defer { close(fd) }
        var hasher = DigestHasher.sha256
        var size: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ImageError.io("read \(file)") }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            size += Int64(n)
        }
        let descriptor = Descriptor(mediaType: mediaType, digest: hasher.finalize(), size: size)
        if contains(descriptor.digest) {
            unlink(file)
        } else {
            guard fsync(fd) == 0 else { throw ImageError.io("fsync \(file)") }
            try ImageError.from(try renameDurably(file, to: path(of: descriptor.digest)))
        }
        return descriptor
    }

    /// Every blob digest in the store.
    public func blobs() -> [Digest] {
        ((try? directoryEntries(atPath: root + "/blobs")) ?? []).map(\.name).flatMap { algorithm in
            ((try? directoryEntries(atPath: "\(root)/blobs/\(algorithm)")) ?? []).map(\.name).compactMap { try? Digest(parsing: "\(algorithm):\($0)") }
        }.sorted()
    }

    // MARK: index.json

    /// The entries of `index.json`: one per tag, plus untagged images pinned by digest.
    ///
    /// - Throws: ``ImageError`` when `index.json` cannot be read or parsed.
    public func entries() throws(ImageError) -> [Descriptor] {
        try Self.decode(ImageIndex.self, from: ImageError.from(try readWholeFile(root + "/index.json")), what: "\(root)/index.json").manifests
    }

    /// Changes `index.json` under the exclusive index lock and replaces it atomically.
    func updateIndex<T>(_ body: (inout [Descriptor]) throws(ImageError) -> T) throws(ImageError) -> T {
        let lock = try ImageError.from(try FileLock(indexLockPath))
        defer { lock.unlock() }
        var index = try Self.decode(ImageIndex.self, from: ImageError.from(try readWholeFile(root + "/index.json")), what: "\(root)/index.json")
        let result = try body(&index.manifests)
        let encoded = try Self.encode(index)
        try ImageError.from(try writeAtomically(root + "/index.json", encoded))
        return result
    }

    /// Points a name at a manifest or index, replacing what the name pointed at before.
    ///
    /// - Parameters:
    ///   - name: The full reference, stored as `org.opencontainers.image.ref.name`.
    ///   - descriptor: The manifest or index descriptor (its blob must be in the store).
    func setReference(_ name: String, to descriptor: Descriptor) throws(ImageError) {
        var entry = descriptor
        entry.annotations = (entry.annotations ?? [:]).merging([Descriptor.refNameAnnotation: name]) { $1 }
        try updateIndex { (entries) throws(ImageError) in
            entries.removeAll { $0.annotations?[Descriptor.refNameAnnotation] == name }
            entries.append(entry)
        }
    }

    /// Keeps an image without a name: an `index.json` entry with no ref name, unless the
    /// manifest already has one.
    ///
    /// - Parameter descriptor: The manifest or index descriptor (its blob must be in the store).
    func pin(_ descriptor: Descriptor) throws(ImageError) {
        try updateIndex { (entries) throws(ImageError) in
            if !entries.contains(where: { $0.digest == descriptor.digest }) { entries.append(descriptor) }
        }
    }

    /// Holds the lock that keeps garbage collection away while content is being added.
    func writerLock() async throws(ImageError) -> FileLock {
        try await FileLock.acquiring(gcLockPath, shared: true)
    }

    // MARK: JSON

    static func encode(_ value: some Encodable) throws(ImageError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(value))
        } catch {
            throw ImageError(code: .invalidContent, detail: "encode json: \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: String) throws(ImageError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw ImageError(code: .invalidContent, detail: "\(what) is not a valid \(type): \(error)")
        }
    }
}

/// Writes one blob: appends to the partial file while hashing, then verifies and publishes it.
///
/// Used by one task at a time; holds the per-digest ingest lock until ``commit()`` or ``discard()``.
/// It is `Sendable` only so that the task holding it can hand it to the thread that fills it
/// (``ContentStore/copy(file:as:)``); it is never used from two places at once.
final class BlobWriter: @unchecked Sendable {
    let expected: Descriptor
    private let partial: String
    private let target: String
    private var fd: Int32
    private var hasher: DigestHasher
    private let initialHasher: DigestHasher
    private let lock: FileLock
    /// Bytes written so far, including what an earlier attempt left in the partial file.
    private(set) var offset: Int64 = 0

    fileprivate init(expected: Descriptor, partial: String, target: String, hasher: DigestHasher, lock: FileLock) throws(ImageError) {
        self.expected = expected
        self.partial = partial
        self.target = target
        self.hasher = hasher
        initialHasher = hasher
        self.lock = lock
        fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ImageError.io("open \(partial)") }
        try resume()
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Re-hashes what an earlier attempt left, so the download can continue where it stopped.
    private func resume() throws(ImageError) {
        let existing = FileIO.size(partial) ?? 0
        guard existing > 0 else { return }
        if existing > expected.size {
            try reset()
            return
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while offset < existing {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ImageError.io("read \(partial)") }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            offset += Int64(n)
        }
    }

    /// Starts over from an empty file (the server ignored a `Range` request, or a copy restarts).
    func reset() throws(ImageError) {
        guard ftruncate(fd, 0) == 0 else { throw ImageError.io("truncate \(partial)") }
        hasher = initialHasher
        offset = 0
    }

    /// Appends bytes, hashing them.
    ///
    /// - Throws: ``ImageError/Code/sizeMismatch`` as soon as the blob grows past its size.
    func write(_ bytes: UnsafeRawBufferPointer) throws(ImageError) {
        guard offset + Int64(bytes.count) <= expected.size else {
            discard()
            throw ImageError(
                code: .sizeMismatch, digest: expected.digest.description,
                detail: "content is longer than the expected \(expected.size) bytes")
        }
        var written = 0
        while written < bytes.count {
            let n = pwrite(fd, bytes.baseAddress.map { $0 + written }, bytes.count - written, off_t(offset) + off_t(written))
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ImageError.io("write \(partial)") }
            written += n
        }
        hasher.update(bytes)
        offset += Int64(bytes.count)
    }

    /// Verifies size and digest, fsyncs and renames the blob into place.
    ///
    /// - Throws: ``ImageError/Code/sizeMismatch`` or ``ImageError/Code/digestMismatch``; the partial
    ///   file is deleted then, so no trace of the bad content stays.
    func commit() throws(ImageError) {
        defer { finish() }
        guard offset == expected.size else {
            discard()
            throw ImageError(
                code: .sizeMismatch, digest: expected.digest.description,
                detail: "content is \(offset) bytes, expected \(expected.size)")
        }
        let actual = hasher.finalize()
        guard actual == expected.digest else {
            discard()
            throw ImageError(code: .digestMismatch, digest: expected.digest.description, detail: "content hashes to \(actual)")
        }
        guard fsync(fd) == 0 else { throw ImageError.io("fsync \(partial)") }
        try ImageError.from(try renameDurably(partial, to: target))
    }

    /// Deletes the partial file (bad content must leave no trace).
    func discard() {
        unlink(partial)
        finish()
    }

    /// Closes the file and releases the lock, keeping the partial file for a later resume.
    func finish() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        lock.unlock()
    }
}
