import FoundationEssentials
import Glibc
import Layers
import SystemSupport

/// The file formats of ``ImageStore/save(_:to:format:)`` and ``ImageStore/load(from:)``.
public enum ArchiveFormat: String, Sendable, Hashable, CaseIterable {
    /// A tar of an OCI image layout (`oci-layout`, `index.json`, `blobs/`), as skopeo's
    /// `oci-archive:` transport and `podman save --format oci-archive` write it.
    case ociArchive = "oci-archive"
    /// `docker save`'s format: `manifest.json`, `repositories`, each config as `<id>.json` and
    /// each layer as `<digest>/layer.tar`; `docker load` and `podman load` read it.
    case dockerArchive = "docker-archive"
}

/// One image of a `docker save` archive's `manifest.json`.
private struct DockerArchiveEntry: Codable {
    var config: String
    var repoTags: [String]?
    var layers: [String]

    enum CodingKeys: String, CodingKey {
        case config = "Config", repoTags = "RepoTags", layers = "Layers"
    }
}

extension ImageStore {
    /// Writes images and everything they need into one archive file.
    ///
    /// The blobs are copied byte for byte, so loading the archive (here, with `docker load`,
    /// `podman load` or skopeo) gives the same image IDs; an OCI archive keeps the manifest
    /// digests too. Costs a copy of every blob of the images.
    ///
    /// - Parameters:
    ///   - names: The images (any form ``image(_:)`` accepts); each name is recorded in the archive.
    ///   - path: The archive file, replaced if it exists (`/dev/stdout` works too).
    ///   - format: ``ArchiveFormat/dockerArchive`` (Docker's default) or ``ArchiveFormat/ociArchive``.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` for an unknown image,
    ///   ``ImageError/Code/io`` when writing fails (a partial regular file is removed).
    public func save(_ names: [String], to path: String, format: ArchiveFormat = .dockerArchive) async throws(ImageError) {
        guard !names.isEmpty else { throw ImageError(code: .invalidArgument, detail: "save needs at least one image") }
        var images: [Image] = []
        for name in names { images.append(try image(name)) }
        let store = content
        let chosen = images
        try await BlockingPool.shared.run { () throws(ImageError) in
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw ImageError.io("create \(path)") }
            defer { close(fd) }
            do throws(ImageError) {
                let writer = TarWriter(fd: fd, path: path)
                switch format {
                case .ociArchive: try Self.writeOCIArchive(chosen, store: store, into: writer)
                case .dockerArchive: try Self.writeDockerArchive(chosen, store: store, into: writer)
                }
                try writer.finish()
            } catch {
                var st = stat()
                if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG { unlink(path) }
                throw error
            }
        }
        logger.info("saved images", metadata: ["path": "\(path)", "format": "\(format.rawValue)", "count": "\(images.count)"])
    }

    private static func writeOCIArchive(_ images: [Image], store: ContentStore, into writer: TarWriter) throws(ImageError) {
        try writer.add("oci-layout", bytes: Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8))
        var written: Set<Digest> = []
        var entries: [Descriptor] = []
        for image in images {
            for blob in [image.manifest.config] + image.layers + [image.descriptor] where written.insert(blob.digest).inserted {
                try writer.add("blobs/\(blob.digest.algorithm)/\(blob.digest.encoded)", copying: store.path(of: blob.digest))
            }
            var entry = image.descriptor
            entry.annotations = image.reference.map { [Descriptor.refNameAnnotation: $0.description] }
            entry.platform = entry.platform ?? image.config.platform
            entries.append(entry)
        }
        try writer.add("index.json", bytes: ContentStore.encode(ImageIndex(manifests: entries)))
    }

    private static func writeDockerArchive(_ images: [Image], store: ContentStore, into writer: TarWriter) throws(ImageError) {
        var written: Set<Digest> = []
        var entries: [(id: Digest, entry: DockerArchiveEntry)] = []
        var repositories: [String: [String: String]] = [:]
        for image in images {
            let tag = image.reference.flatMap { reference in reference.tag.map { reference.familiarName + ":" + $0 } }
            if let index = entries.firstIndex(where: { $0.id == image.id }) {
                if let tag { entries[index].entry.repoTags = (entries[index].entry.repoTags ?? []) + [tag] }
                continue
            }
            let config = "\(image.id.encoded).json"
            if written.insert(image.id).inserted { try writer.add(config, copying: store.path(of: image.id)) }
            // Layers go in as stored (possibly compressed): docker load, podman load and skopeo
            // detect the compression of each layer.tar.
            let layers = image.layers.map { "\($0.digest.encoded)/layer.tar" }
            for (layer, name) in zip(image.layers, layers) where written.insert(layer.digest).inserted {
                try writer.add(name, copying: store.path(of: layer.digest))
            }
            entries.append((image.id, DockerArchiveEntry(config: config, repoTags: tag.map { [$0] }, layers: layers)))
            if let reference = image.reference, let tag = reference.tag, let top = image.layers.last {
                repositories[reference.familiarName, default: [:]][tag] = top.digest.encoded
            }
        }
        try writer.add("manifest.json", bytes: ContentStore.encode(entries.map(\.entry)))
        try writer.add("repositories", bytes: ContentStore.encode(repositories))
    }

    /// Reads an archive written by ``save(_:to:format:)``, `docker save`, `podman save` or
    /// skopeo, and adds its images to the store under the names it records.
    ///
    /// The format is detected: a `manifest.json` makes it a Docker archive (also when the archive
    /// is an OCI layout too, as `docker save` writes since Docker 25), otherwise it must be an
    /// OCI layout. Every blob is verified (OCI) or named by its content (Docker) before it is
    /// visible. Costs an extraction of the archive next to the store, then a read of every blob.
    ///
    /// - Parameter path: The archive file.
    /// - Returns: The loaded images, with the names they got.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/invalidContent`` for a malformed
    ///   archive or one that names files outside itself, ``ImageError/Code/digestMismatch`` when
    ///   an OCI blob does not match its name.
    @discardableResult
    public func load(from path: String) async throws(ImageError) -> [Image] {
        let scratch = "\(content.root)/.berth/load-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try ImageError.from(try makeDirectories(scratch, mode: 0o755))
        defer { try? removeTree(scratch) }
        try await BlockingPool.shared.run { () throws(ImageError) in try TarExtractor.extract(path, into: scratch) }
        let images: [Image]
        if FileIO.exists(scratch + "/manifest.json") {
            images = try await loadDockerArchive(scratch, archive: path)
        } else if FileIO.exists(scratch + "/index.json") {
            images = try await importLayout(at: scratch)
        } else {
            throw ImageError(code: .invalidContent, detail: "\(path) holds neither manifest.json nor index.json")
        }
        logger.info("loaded images", metadata: ["path": "\(path)", "count": "\(images.count)"])
        return images
    }

    private func loadDockerArchive(_ directory: String, archive: String) async throws(ImageError) -> [Image] {
        let writing = try await content.writerLock()
        defer { writing.unlock() }
        let store = content
        let entries = try ContentStore.decode(
            [DockerArchiveEntry].self, from: ImageError.from(try readWholeFile(directory + "/manifest.json")), what: "\(archive): manifest.json")
        var adopted: [String: Descriptor] = [:]
        /// Moves one file of the archive into the store (once, even if several images share it).
        func adopt(_ name: String, mediaType: (String) throws(ImageError) -> MediaType) async throws(ImageError) -> Descriptor {
            let components = name.split(separator: "/")
            guard !name.hasPrefix("/"), !components.contains(".."), !components.isEmpty else {
                throw ImageError(code: .invalidContent, detail: "\(archive): manifest.json names \"\(name)\", outside the archive")
            }
            if let known = adopted[name] { return known }
            let file = directory + "/" + components.joined(separator: "/")
            let type = try mediaType(file)
            let descriptor = try await BlockingPool.shared.run { () throws(ImageError) in try store.adopt(file: file, mediaType: type) }
            adopted[name] = descriptor
            return descriptor
        }
        var images: [Image] = []
        for entry in entries {
            let config = try await adopt(entry.config) { _ in .dockerConfig }
            let parsed = try store.decode(ImageConfig.self, from: config.digest)
            guard parsed.rootfs.diffIDs.count == entry.layers.count else {
                throw ImageError(
                    code: .invalidContent, digest: config.digest.description,
                    detail: "\(archive): the config lists \(parsed.rootfs.diffIDs.count) layers, manifest.json \(entry.layers.count)")
            }
            var layers: [Descriptor] = []
            for layer in entry.layers {
                layers.append(try await adopt(layer, mediaType: Self.dockerLayerType))
            }
            var manifest = ImageManifest(config: config, layers: layers)
            manifest.mediaType = .dockerManifest
            let descriptor = try store.write(json: manifest, mediaType: .dockerManifest)
            let names = try (entry.repoTags ?? []).map { (tag) throws(ImageError) in try ImageReference(parsing: tag) }
            for name in names { try store.setReference(name.description, to: descriptor) }
            if names.isEmpty { try store.pin(descriptor) }
            images.append(Image(reference: names.first, descriptor: descriptor, manifest: manifest, config: parsed))
        }
        return images
    }

    /// The Docker layer media type for a layer file, from its first bytes.
    private static func dockerLayerType(_ file: String) throws(ImageError) -> MediaType {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.io("open \(file)") }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 4)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4, 0) }
        switch LayerCompression(detectingFrom: head.prefix(max(n, 0))) {
        case .gzip: return .dockerLayerGzip
        case .zstd: return .dockerLayerZstd
        case .none: return .dockerLayer
        }
    }
}
