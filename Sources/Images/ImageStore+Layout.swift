import SystemSupport
extension ImageStore {
    /// Copies the images of an OCI image layout directory into the store, verifying every blob.
    ///
    /// Each `index.json` entry is named by `reference`, else by its
    /// `org.opencontainers.image.ref.name` when that is a full reference, else by containerd's
    /// `io.containerd.image.name`; an entry with no usable name is kept unnamed (``images()``
    /// lists it without a reference).
    ///
    /// - Parameters:
    ///   - directory: The layout (`oci-layout`, `index.json`, `blobs/`).
    ///   - reference: The name for the layout's only image.
    /// - Returns: The imported single-platform images, as the layout lists them (an index entry is
    ///   imported whole but not returned).
    /// - Throws: ``ImageError`` with code ``ImageError/Code/digestMismatch`` if a blob does not
    ///   match its name (nothing of it is stored), ``ImageError/Code/invalidContent`` if the layout is malformed.
    @discardableResult
    public func importLayout(at directory: String, as reference: ImageReference? = nil) async throws(ImageError) -> [Image] {
        let writing = try await content.writerLock()
        defer { writing.unlock() }
        let index = try ContentStore.decode(ImageIndex.self, from: ImageError.from(try readWholeFile(directory + "/index.json")), what: "\(directory)/index.json")
        if reference != nil && index.manifests.count != 1 {
            throw ImageError(
                code: .invalidArgument, reference: reference?.description,
                detail: "\(directory) holds \(index.manifests.count) images; name them in the layout instead")
        }
        var imported: [Image] = []
        for entry in index.manifests {
            try await copyTree(entry, from: directory)
            var target = entry
            target.annotations?[Descriptor.refNameAnnotation] = nil
            target.annotations?[Self.containerdNameAnnotation] = nil
            if target.annotations?.isEmpty == true { target.annotations = nil }
            let name = reference ?? Self.name(of: entry)
            if let name {
                try content.setReference(name.description, to: target)
            } else {
                try content.pin(target)
            }
            if target.mediaType.isManifest {
                var image = try load(target)
                image.reference = name
                imported.append(image)
            }
        }
        return imported
    }

    /// The annotation containerd (and `docker save` since Docker 25) puts the full reference in.
    static let containerdNameAnnotation = "io.containerd.image.name"

    /// A layout entry's name: a ref name that is a full reference (Berth's own layouts), else
    /// containerd's annotation. A bare tag such as skopeo's `v1` names nothing.
    private static func name(of entry: Descriptor) -> ImageReference? {
        let candidates = [entry.annotations?[Descriptor.refNameAnnotation], entry.annotations?[containerdNameAnnotation]]
        for case let text? in candidates where text.contains("/") || text.contains(":") {
            if let reference = try? ImageReference(parsing: text) { return reference }
        }
        return nil
    }

    /// Copies a manifest or index and everything below it, children first, so that a
    /// document is never visible before the blobs it points at.
    private func copyTree(_ descriptor: Descriptor, from directory: String) async throws(ImageError) {
        let file = "\(directory)/blobs/\(descriptor.digest.algorithm)/\(descriptor.digest.encoded)"
        if descriptor.mediaType.isIndex || descriptor.mediaType.isManifest {
            let bytes = try ImageError.from(try readWholeFile(file))
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
