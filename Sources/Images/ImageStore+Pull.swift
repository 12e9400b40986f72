import Logging

extension ImageStore {
    /// Downloads an image into the store and tags it.
    ///
    /// Fetches the manifest (choosing from an index by platform), then the config and layers,
    /// several blobs at a time, each hashed while it streams and verified before it becomes
    /// visible. Blobs already in the store are not downloaded again; a download interrupted by
    /// a dropped connection (or by a killed process) resumes with an HTTP `Range` request.
    /// The name then points at the platform's manifest.
    ///
    /// - Parameters:
    ///   - reference: What to pull.
    ///   - platform: Which manifest to take from a multi-platform index (default: this machine's).
    ///   - progress: Receives per-blob progress; it is finished when the pull ends.
    /// - Returns: The pulled image.
    /// - Throws: ``ImageError``: ``ImageError/Code/platformNotFound`` when an index has no
    ///   manifest for the platform, ``ImageError/Code/digestMismatch`` when content does not
    ///   verify (nothing of it stays in the store), ``ImageError/Code/unauthorized``,
    ///   ``ImageError/Code/notFound`` or ``ImageError/Code/network`` from the registry.
    @discardableResult
    public func pull(
        _ reference: ImageReference, platform: Platform = .host,
        progress: AsyncStream<TransferProgress>.Continuation? = nil
    ) async throws(ImageError) -> Image {
        defer { progress?.finish() }
        let writing = try await content.writerLock()
        defer { writing.unlock() }
        let store = content
        let image = try await registry.withSession { (session) throws(ImageError) -> Image in
            var (descriptor, bytes) = try await session.manifest(reference)
            if descriptor.mediaType.isIndex {
                let index = try ContentStore.decode(ImageIndex.self, from: bytes, what: "index \(descriptor.digest)")
                guard let chosen = index.manifest(for: platform) else {
                    let offered = index.manifests.compactMap { $0.platform?.description }.joined(separator: ", ")
                    throw ImageError(
                        code: .platformNotFound, reference: reference.description,
                        detail: "no manifest for \(platform) (the index offers \(offered.isEmpty ? "none" : offered))")
                }
                (descriptor, bytes) = try await session.manifest(reference.withDigest(chosen.digest))
                descriptor.platform = chosen.platform
            }
            guard descriptor.mediaType.isManifest else {
                throw ImageError(code: .unsupported, reference: reference.description, detail: "\(descriptor.mediaType) is not an image manifest")
            }
            let manifest = try ContentStore.decode(ImageManifest.self, from: bytes, what: "manifest \(descriptor.digest)")
            try await self.fetch([manifest.config] + manifest.layers, from: reference, session: session, progress: progress)
            let config = try store.decode(ImageConfig.self, from: manifest.config.digest)
            // The manifest goes in last, so a manifest in the store always has its blobs.
            try store.write(bytes, mediaType: descriptor.mediaType)
            return Image(reference: reference, descriptor: descriptor, manifest: manifest, config: config)
        }
        try content.setReference(reference.description, to: image.descriptor)
        logger.info("pulled image", metadata: ["reference": "\(reference)", "digest": "\(image.digest)"])
        return image
    }

    /// Downloads the blobs the store lacks, at most ``RegistryClient/Configuration/concurrentTransfers`` at a time.
    private func fetch(
        _ blobs: [Descriptor], from reference: ImageReference, session: RegistrySession,
        progress: AsyncStream<TransferProgress>.Continuation?
    ) async throws(ImageError) {
        let store = content
        let limit = max(1, registry.configuration.concurrentTransfers)
        let result = await withTaskGroup(of: ImageError?.self) { group -> ImageError? in
            var running = 0
            var firstError: ImageError?
            for blob in Self.unique(blobs) {
                if running >= limit, let finished = await group.next() {
                    running -= 1
                    if let finished, firstError == nil {
                        firstError = finished
                        group.cancelAll()
                    }
                }
                if firstError != nil { break }
                running += 1
                group.addTask {
                    do throws(ImageError) {
                        guard let writer = try await store.ingest(blob) else {
                            progress?.yield(TransferProgress(digest: blob.digest, event: .skipped, completed: blob.size, total: blob.size))
                            return nil
                        }
                        defer { writer.finish() }
                        try await session.download(blob, from: reference, into: writer) { done in
                            progress?.yield(TransferProgress(digest: blob.digest, event: .transferring, completed: done, total: blob.size))
                        }
                        progress?.yield(TransferProgress(digest: blob.digest, event: .done, completed: blob.size, total: blob.size))
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            for await finished in group where finished != nil && firstError == nil {
                firstError = finished
                group.cancelAll()
            }
            return firstError
        }
        if let result { throw result }
    }

    static func unique(_ blobs: [Descriptor]) -> [Descriptor] {
        var seen: Set<Digest> = []
        return blobs.filter { seen.insert($0.digest).inserted }
    }
}
