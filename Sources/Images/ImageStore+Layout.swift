extension ImageStore {
    /// Copies the images of an OCI image layout directory into the store, verifying every blob.
    ///
    /// - Parameters:
    ///   - directory: The layout (`oci-layout`, `index.json`, `blobs/`).
    ///   - reference: The name for the layout's only image; without it, each `index.json` entry
    ///     is named by its `org.opencontainers.image.ref.name` when that is a full reference.
    /// - Returns: The descriptors that were copied and named, as the layout lists them.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/digestMismatch`` if a blob does not
    ///   match its name (nothing of it is stored), ``ImageError/Code/invalidContent`` if the layout is malformed.
    @discardableResult
    public func importLayout(at directory: String, as reference: ImageReference? = nil) async throws(ImageError) -> [Descriptor] {
        let writing = try await content.writerLock()
        defer { writing.release() }
        let index = try ContentStore.decode(ImageIndex.self, from: FileIO.read(directory + "/index.json"), what: "\(directory)/index.json")
        if reference != nil && index.manifests.count != 1 {
            throw ImageError(
                code: .invalidArgument, reference: reference?.description,
                detail: "\(directory) holds \(index.manifests.count) images; name them in the layout instead")
        }
        var imported: [Descriptor] = []
        for entry in index.manifests {
            try await copyTree(entry, from: directory)
            let name = reference?.description ?? entry.annotations?[Descriptor.refNameAnnotation]
            guard let name, let parsed = try? ImageReference(parsing: name), name.contains("/") || name.contains(":") else { continue }
            var target = entry
            target.annotations?[Descriptor.refNameAnnotation] = nil
            if target.annotations?.isEmpty == true { target.annotations = nil }
            try content.setReference(parsed.description, to: target)
            imported.append(target)
        }
        return imported
    }

    /// Copies a manifest or index and everything below it, children first, so that a
    /// document is never visible before the blobs it points at.
    private func copyTree(_ descriptor: Descriptor, from directory: String) async throws(ImageError) {
        let file = "\(directory)/blobs/\(descriptor.digest.algorithm)/\(descriptor.digest.encoded)"
        if descriptor.mediaType.isIndex || descriptor.mediaType.isManifest {
            let bytes = try FileIO.read(file)
            if descriptor.mediaType.isIndex {
                for child in try ContentStore.decode(ImageIndex.self, from: bytes, what: file).manifests {
                    try await copyTree(child, from: directory)
                }
            } else {
                let manifest = try ContentStore.decode(ImageManifest.self, from: bytes, what: file)
                for blob in Self.unique([manifest.config] + manifest.layers) where !content.contains(blob.digest) {
                    try await content.copy(file: "\(directory)/blobs/\(blob.digest.algorithm)/\(blob.digest.encoded)", as: blob)
                }
            }
        }
        try await content.copy(file: file, as: descriptor)
    }
}
