import FoundationEssentials
import Glibc
public import Logging
import SystemSupport

/// The images on one machine: a ``ContentStore`` plus a ``RegistryClient``, with Docker's image
/// verbs (pull, push, images, inspect, tag, rmi, prune).
///
/// ```swift
/// let store = try ImageStore(root: "/var/lib/berth")
/// let image = try await store.pull(ImageReference(parsing: "127.0.0.1:5000/tools/busybox:1.36"))
/// print(image.config.config?.cmd ?? [])
/// ```
///
/// Several `ImageStore`s, in one process or in several, can share a root: blob writes are
/// verified and atomic, `index.json` changes are serialized with `flock`, and garbage collection
/// waits for writers.
public final class ImageStore: Sendable {
    /// The content store (`<root>/content`, an OCI image layout).
    public let content: ContentStore
    /// The registry client used by pull and push.
    public let registry: RegistryClient
    let logger: Logger

    /// Opens (creating) the image store under a Berth root directory.
    ///
    /// - Parameters:
    ///   - root: The Berth root; content goes to `<root>/content`.
    ///   - registry: The registry client for pulls and pushes.
    ///   - logger: Where store operations log.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/io`` if the directories cannot be created.
    public init(root: String, registry: RegistryClient = RegistryClient(), logger: Logger = Logger(label: "berth.images")) throws(ImageError) {
        content = try ContentStore(root: root + "/content", logger: logger)
        self.registry = registry
        self.logger = logger
    }

    // MARK: Local images

    /// Every tagged image, sorted by reference.
    ///
    /// - Returns: One ``Image`` per `index.json` entry that names a single-platform manifest.
    /// - Throws: ``ImageError`` if the store cannot be read.
    public func images() throws(ImageError) -> [Image] {
        var result: [Image] = []
        for entry in try content.entries() where entry.mediaType.isManifest {
            let name = entry.annotations?[Descriptor.refNameAnnotation]
            var image = try load(entry)
            image.reference = name.flatMap { try? ImageReference(parsing: $0) }
            result.append(image)
        }
        return result.sorted { ($0.reference?.description ?? "") < ($1.reference?.description ?? "") }
    }

    /// Finds a local image by reference, manifest digest or (a prefix of at least 12 characters of) its ID.
    ///
    /// - Parameter name: `busybox`, `host:5000/a/b:tag`, `sha256:…` or a short ID.
    /// - Returns: The image.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` naming the reference.
    public func image(_ name: String) throws(ImageError) -> Image {
        let entries = try content.entries()
        if let reference = try? ImageReference(parsing: name),
            let entry = entries.first(where: { $0.annotations?[Descriptor.refNameAnnotation] == reference.description })
        {
            var image = try load(entry)
            image.reference = reference
            return image
        }
        let idPrefix = name.hasPrefix("sha256:") ? name : "sha256:" + name
        if idPrefix.count >= 7 + 12 {
            for entry in entries where entry.mediaType.isManifest {
                let image = try load(entry)
                if image.digest.description.hasPrefix(idPrefix) || image.id.description.hasPrefix(idPrefix) { return image }
            }
        }
        throw ImageError(code: .notFound, reference: name, detail: "no such image in the store")
    }

    /// Reads a manifest and its config from the store.
    func load(_ descriptor: Descriptor) throws(ImageError) -> Image {
        guard descriptor.mediaType.isManifest else {
            throw ImageError(code: .unsupported, digest: descriptor.digest.description, detail: "\(descriptor.mediaType) is not an image manifest")
        }
        let manifest = try content.decode(ImageManifest.self, from: descriptor.digest)
        let config = try content.decode(ImageConfig.self, from: manifest.config.digest)
        return Image(reference: nil, descriptor: descriptor, manifest: manifest, config: config)
    }

    /// Gives an image another name.
    ///
    /// - Parameters:
    ///   - source: The existing image (any form ``image(_:)`` accepts).
    ///   - target: The new reference; a previous image with that name loses it.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` if the source does not exist.
    public func tag(_ source: String, as target: ImageReference) throws(ImageError) {
        let image = try image(source)
        try content.setReference(target.description, to: image.descriptor)
    }

    /// Removes a name; the image's blobs stay until ``collectGarbage(keeping:)``.
    ///
    /// - Parameters:
    ///   - name: The reference to remove, or an ID/digest to remove every name of that image.
    ///   - force: Remove even if `isInUse` says a container uses the image.
    ///   - isInUse: Asked with the image ID; containers above this layer answer it.
    /// - Returns: The references that were removed.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/inUse`` if the image is used and
    ///   `force` is false, ``ImageError/Code/notFound`` if there is no such image.
    @discardableResult
    public func remove(_ name: String, force: Bool = false, isInUse: (Digest) -> Bool = { _ in false }) throws(ImageError) -> [String] {
        let image = try image(name)
        if !force && isInUse(image.id) {
            throw ImageError(code: .inUse, reference: name, detail: "image \(image.id) is used by a container")
        }
        return try content.updateIndex { entries in
            let matching = entries.filter { entry in
                guard entry.digest == image.digest else { return false }
                return image.reference.map { entry.annotations?[Descriptor.refNameAnnotation] == $0.description } ?? true
            }
            entries.removeAll { entry in matching.contains(entry) }
            return matching.compactMap { $0.annotations?[Descriptor.refNameAnnotation] }
        }
    }

    /// Deletes blobs no `index.json` entry reaches.
    ///
    /// Waits until no pull, push or import is writing to the store (they hold a shared lock).
    ///
    /// - Parameter keeping: Extra blob digests to keep (for example images a container was created from).
    /// - Returns: The deleted digests.
    /// - Throws: ``ImageError`` if the store cannot be read.
    @discardableResult
    public func collectGarbage(keeping: Set<Digest> = []) async throws(ImageError) -> [Digest] {
        let lock = try await FileLock.acquiring(content.gcLockPath)
        defer { lock.unlock() }
        var live = keeping
        var pending = try content.entries()
        while let descriptor = pending.popLast() {
            guard live.insert(descriptor.digest).inserted, content.contains(descriptor.digest) else { continue }
            if descriptor.mediaType.isIndex {
                pending += try content.decode(ImageIndex.self, from: descriptor.digest).manifests
            } else if descriptor.mediaType.isManifest {
                let manifest = try content.decode(ImageManifest.self, from: descriptor.digest)
                pending += [manifest.config] + manifest.layers
            }
        }
        let dead = content.blobs().filter { !live.contains($0) }
        for digest in dead { unlink(content.path(of: digest)) }
        logger.info("garbage collected blobs", metadata: ["count": "\(dead.count)"])
        return dead
    }
}
