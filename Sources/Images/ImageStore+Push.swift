import AsyncHTTPClient
import FoundationEssentials
import Glibc
import NIOCore

extension ImageStore {
    /// Uploads a local image and points a tag in the registry at it.
    ///
    /// Each blob is first checked with `HEAD`; a blob the registry has in another repository
    /// (`mountFrom`) is mounted instead of uploaded; others are uploaded in one `PUT`, or in
    /// `PATCH` chunks above ``RegistryClient/Configuration/uploadChunkSize``. The manifest bytes
    /// are pushed unchanged, so the pushed digest equals the local one.
    ///
    /// - Parameters:
    ///   - name: The local image (any form ``image(_:)`` accepts).
    ///   - destination: Where to push; defaults to the image's own reference.
    ///   - mountFrom: A repository on the same registry that may already hold the blobs.
    ///   - progress: Receives per-blob progress; it is finished when the push ends.
    /// - Returns: The pushed manifest's descriptor.
    /// - Throws: ``ImageError`` from the store or the registry (``ImageError/Code/unauthorized``,
    ///   ``ImageError/Code/denied``, ``ImageError/Code/network``).
    @discardableResult
    public func push(
        _ name: String, to destination: ImageReference? = nil, mountFrom: String? = nil,
        progress: AsyncStream<TransferProgress>.Continuation? = nil
    ) async throws(ImageError) -> Descriptor {
        defer { progress?.finish() }
        let image = try image(name)
        guard let target = destination ?? image.reference else {
            throw ImageError(code: .invalidArgument, reference: name, detail: "push needs a destination reference")
        }
        let store = content
        let chunkSize = registry.configuration.uploadChunkSize
        try await registry.withSession { (session) throws(ImageError) in
            for blob in Self.unique([image.manifest.config] + image.manifest.layers) {
                let uploaded = try await session.upload(
                    blob, file: store.path(of: blob.digest), to: target, mountFrom: mountFrom, chunkSize: chunkSize)
                progress?.yield(TransferProgress(digest: blob.digest, event: uploaded ? .done : .skipped, completed: blob.size, total: blob.size))
            }
            let bytes = try store.read(image.digest)
            try await session.putManifest(bytes, mediaType: image.descriptor.mediaType, at: target)
        }
        logger.info("pushed image", metadata: ["reference": "\(target)", "digest": "\(image.digest)"])
        return image.descriptor
    }
}

extension RegistrySession {
    static func pushScopes(_ reference: ImageReference, mountFrom: String? = nil) -> [String] {
        ["repository:\(reference.repository):pull,push"] + (mountFrom.map { ["repository:\($0):pull"] } ?? [])
    }

    /// Uploads one blob unless the registry has it.
    ///
    /// - Returns: False if the blob was already there (or was mounted), true if bytes were sent.
    func upload(
        _ blob: Descriptor, file: String, to reference: ImageReference, mountFrom: String?, chunkSize: Int64?
    ) async throws(ImageError) -> Bool {
        let registry = reference.registry
        let scopes = Self.pushScopes(reference, mountFrom: mountFrom)
        let blobPath = "/v2/\(reference.repository)/blobs/\(blob.digest)"
        let head = try await send(.HEAD, registry: registry, path: blobPath, scopes: scopes)
        if head.status == .ok { return false }

        var start = "/v2/\(reference.repository)/blobs/uploads/"
        if let mountFrom { start += "?mount=\(blob.digest)&from=\(mountFrom)" }
        let begun = try await send(.POST, registry: registry, path: start, scopes: scopes, body: { .bytes(ByteBuffer()) })
        if begun.status == .created { return false }  // mounted
        try await expect(begun, [.accepted], registry: registry, what: "start upload", digest: blob.digest.description)
        var location = try self.location(begun, registry: registry)

        if let chunkSize, blob.size > chunkSize {
            var offset: Int64 = 0
            while offset < blob.size {
                let length = min(chunkSize, blob.size - offset)
                let chunkStart = offset
                let response = try await send(
                    .PATCH, registry: registry, url: location, scopes: scopes,
                    headers: [
                        ("Content-Type", "application/octet-stream"),
                        ("Content-Range", "\(chunkStart)-\(chunkStart + length - 1)"),
                    ],
                    body: { Self.fileBody(file, offset: chunkStart, length: length) })
                try await expect(response, [.accepted, .noContent], registry: registry, what: "upload chunk", digest: blob.digest.description)
                location = try self.location(response, registry: registry)
                offset += length
            }
            let done = try await send(
                .PUT, registry: registry, url: Self.appendingDigest(location, blob.digest), scopes: scopes, body: { .bytes(ByteBuffer()) })
            try await expect(done, [.created], registry: registry, what: "finish upload", digest: blob.digest.description)
        } else {
            let size = blob.size
            let done = try await send(
                .PUT, registry: registry, url: Self.appendingDigest(location, blob.digest), scopes: scopes,
                headers: [("Content-Type", "application/octet-stream")],
                body: { Self.fileBody(file, offset: 0, length: size) })
            try await expect(done, [.created], registry: registry, what: "upload", digest: blob.digest.description)
        }
        return true
    }

    func putManifest(_ bytes: [UInt8], mediaType: MediaType, at reference: ImageReference) async throws(ImageError) {
        let response = try await send(
            .PUT, registry: reference.registry, path: "/v2/\(reference.repository)/manifests/\(reference.manifestReference)",
            scopes: Self.pushScopes(reference), headers: [("Content-Type", mediaType.rawValue)],
            body: { .bytes(ByteBuffer(bytes: bytes)) })
        try await expect(response, [.created], registry: reference.registry, what: "put manifest", reference: reference.description)
    }

    /// The absolute upload URL from a `Location` header (registries may answer with a relative one).
    private func location(_ response: HTTPClientResponse, registry: String) throws(ImageError) -> String {
        guard let location = response.headers.first(name: "Location") else {
            throw ImageError(code: .registry, registry: registry, detail: "upload response has no location")
        }
        return location.hasPrefix("http") ? location : registryClient.baseURL(registry) + location
    }

    private static func appendingDigest(_ location: String, _ digest: Digest) -> String {
        location + (location.contains("?") ? "&" : "?") + "digest=" + digest.description
    }

    /// Streams a byte range of a file as a request body, read 1 MiB at a time as the upload asks for it.
    static func fileBody(_ path: String, offset: Int64, length: Int64) -> HTTPClientRequest.Body {
        .stream(FileChunks(path: path, offset: offset, end: offset + length), length: .known(length))
    }
}

/// A byte range of a file as an async sequence of buffers, read lazily, so an upload never holds
/// more than one chunk in memory.
struct FileChunks: AsyncSequence, Sendable {
    let path: String
    let offset: Int64
    let end: Int64

    final class AsyncIterator: AsyncIteratorProtocol {
        private var fd: Int32
        private var position: Int64
        private let end: Int64
        private let path: String

        init(_ chunks: FileChunks) {
            fd = open(chunks.path, O_RDONLY | O_CLOEXEC)
            position = chunks.offset
            end = chunks.end
            path = chunks.path
        }

        deinit {
            if fd >= 0 { close(fd) }
        }

        func next() async throws -> ByteBuffer? {
            guard position < end else { return nil }
            guard fd >= 0 else { throw ImageError.io("open \(path)") }
            var buffer = ByteBuffer()
            let want = Int(Swift.min(1 << 20, end - position))
            while true {
                var n = 0
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { bytes in
                    n = pread(fd, bytes.baseAddress, want, off_t(position))
                    return Swift.max(n, 0)
                }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw ImageError.io("read \(path)") }
                if n == 0 { throw ImageError(code: .io, detail: "\(path) ended before byte \(end)") }
                position += Int64(n)
                return buffer
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(self) }
}
