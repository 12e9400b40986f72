import Glibc
public import Layers
import SystemPackage
import SystemSupport

/// A layer blob on disk, ready to become the top layer of an image.
///
/// Made from what `Snapshot/writeDiff(toFile:compression:excluding:)` returns:
///
/// ```swift
/// let path = "/var/lib/berth/tmp/c1.layer"
/// let layer = LayerBlob(path: path, diff: try snapshot.writeDiff(toFile: path, compression: .gzip))
/// let image = try await images.commit("busybox", layer: layer, as: ImageReference(parsing: "my/app:1"))
/// ```
public struct LayerBlob: Sendable, Hashable {
    /// The blob file (a tar, gzip- or zstd-compressed as ``diff`` says).
    public var path: String
    /// The blob's diff ID, digest, size and compression.
    public var diff: DiffResult

    /// Describes a layer blob.
    ///
    /// - Parameters:
    ///   - path: The blob file.
    ///   - diff: What writing it returned.
    public init(path: String, diff: DiffResult) {
        self.path = path
        self.diff = diff
    }
}

extension ImageStore {
    // MARK: commit

    /// Makes a new image from a base image and one more layer (`docker commit`).
    ///
    /// The new configuration is the base's with the layer's diff ID appended, a history entry
    /// added and `change` applied; the new OCI manifest lists the base's layers and the new one.
    /// The layer file is copied into the store and verified against `layer.diff`.
    ///
    /// - Parameters:
    ///   - base: The base image (any form ``image(_:)`` accepts), or nil to start from nothing.
    ///   - layer: The new top layer.
    ///   - reference: The new image's name, or nil to keep it unnamed (find it by ID).
    ///   - history: The history entry for the layer; its `created` defaults to now.
    ///   - change: Edits the configuration (command, environment, labels) before it is written.
    /// - Returns: The new image.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` for an unknown base,
    ///   ``ImageError/Code/digestMismatch`` when the layer file does not match `layer.diff`.
    @discardableResult
    public func commit(
        _ base: String?, layer: LayerBlob, as reference: ImageReference?,
        history: ImageConfig.History = ImageConfig.History(), change: (inout ImageConfig) -> Void = { _ in }
    ) async throws(ImageError) -> Image {
        let writing = try await content.writerLock()
        defer { writing.unlock() }
        let diffID = try Digest(parsing: layer.diff.diffID)
        let blob = Descriptor(
            mediaType: MediaType(rawValue: layer.diff.mediaType), digest: try Digest(parsing: layer.diff.digest), size: layer.diff.size)
        try await content.copy(file: layer.path, as: blob)
        return try addImage(on: base.map { (name) throws(ImageError) in try image(name) }, layer: blob, diffID: diffID,
                            as: reference, history: history, change: change)
    }

    /// Writes the config and manifest of `base` plus one layer already in the store, and names it.
    private func addImage(
        on base: Image?, layer: Descriptor, diffID: Digest, as reference: ImageReference?,
        history: ImageConfig.History, change: (inout ImageConfig) -> Void
    ) throws(ImageError) -> Image {
        var config = base?.config ?? ImageConfig(platform: .host, config: RuntimeConfig(), diffIDs: [])
        let created = history.created ?? ImageConfig.now()
        config.created = created
        config.rootfs.diffIDs.append(diffID)
        var entry = history
        entry.created = created
        config.history = (config.history ?? []) + [entry]
        change(&config)
        // A base pulled as a Docker image keeps its layer bytes; only the descriptors switch to
        // the OCI names of the same compression, since an OCI manifest may not list Docker types.
        let baseLayers = (base?.layers ?? []).map { descriptor in
            var copy = descriptor
            if let compression = descriptor.mediaType.layerCompression { copy.mediaType = MediaType(rawValue: compression.ociMediaType) }
            return copy
        }
        let configDescriptor = try content.write(json: config, mediaType: .ociConfig)
        let manifest = ImageManifest(config: configDescriptor, layers: baseLayers + [layer])
        var descriptor = try content.write(json: manifest, mediaType: .ociManifest)
        descriptor.platform = config.platform
        if let reference {
            try content.setReference(reference.description, to: descriptor)
        } else {
            try content.pin(descriptor)
        }
        logger.info("committed image", metadata: ["reference": "\(reference?.description ?? "")", "id": "\(configDescriptor.digest)"])
        return Image(reference: reference, descriptor: descriptor, manifest: manifest, config: config)
    }

    // MARK: import

    /// Makes a one-layer image from a directory tree or a tar file (`docker import`).
    ///
    /// A directory is written as a gzip-compressed layer with `exportFilesystem(of:to:compression:)`;
    /// a tar file becomes the layer as it is. Costs a read of the whole tree or file.
    ///
    /// - Parameters:
    ///   - source: A directory, or an uncompressed tar file.
    ///   - reference: The image's name, or nil to keep it unnamed.
    ///   - config: The runtime defaults (command, environment) of the image.
    ///   - history: The history entry; its `created` defaults to now.
    /// - Returns: The new image.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` if `source` does not exist,
    ///   ``ImageError/Code/unsupported`` for a compressed tar file (decompress it first).
    @discardableResult
    public func importFilesystem(
        _ source: String, as reference: ImageReference?, config: RuntimeConfig = RuntimeConfig(),
        history: ImageConfig.History = ImageConfig.History(comment: "imported")
    ) async throws(ImageError) -> Image {
        guard FileIO.exists(source) else { throw ImageError(code: .notFound, detail: "\(source) does not exist") }
        let writing = try await content.writerLock()
        defer { writing.unlock() }
        let staging = "\(content.root)/.berth/ingest/import-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(staging) }
        let store = content
        let (layer, diffID) = try await BlockingPool.shared.run { () throws(ImageError) -> (Descriptor, Digest) in
            if FileIO.isDirectory(source) {
                let fd = open(staging, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw ImageError.io("create \(staging)") }
                defer { close(fd) }
                let diff: DiffResult
                do {
                    diff = try exportFilesystem(of: source, to: FileDescriptor(rawValue: fd), compression: .gzip)
                } catch {
                    throw ImageError(code: .io, detail: "write \(source) as a layer: \(error)")
                }
                return (try store.adopt(file: staging, mediaType: .ociLayerGzip), try Digest(parsing: diff.diffID))
            }
            guard try Self.compression(of: source) == LayerCompression.none else {
                throw ImageError(code: .unsupported, detail: "\(source) is compressed; import takes a directory or a plain tar")
            }
            try Self.copyFile(source, to: staging)
            let blob = try store.adopt(file: staging, mediaType: .ociLayer)
            return (blob, blob.digest)
        }
        return try addImage(on: nil, layer: layer, diffID: diffID, as: reference, history: history) { image in
            image.config = config
        }
    }

    private static func compression(of file: String) throws(ImageError) -> LayerCompression {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.io("open \(file)") }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 4)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4, 0) }
        return LayerCompression(detectingFrom: head.prefix(max(n, 0)))
    }

    static func copyFile(_ source: String, to target: String) throws(ImageError) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw ImageError.io("open \(source)") }
        defer { close(input) }
        let output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw ImageError.io("create \(target)") }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ImageError.io("read \(source)") }
            if n == 0 { return }
            try FileIO.withBytes(buffer, 0..<n) { (bytes) throws(ImageError) in try ImageError.from(try writeAll(output, bytes, path: target)) }
        }
    }

    // MARK: unpack

    /// Makes sure every layer of an image is unpacked in a layer store, so a container's root
    /// filesystem can be made from it.
    ///
    /// Chain IDs come from the config's diff IDs; each missing layer is unpacked from its blob
    /// file, all of them in parallel (each lands in its own directory, and Layers verifies
    /// each against its diff ID). Layers already in the store cost nothing.
    ///
    /// - Parameters:
    ///   - image: An image in this store.
    ///   - layers: The layer store, normally `<berth root>/layers`.
    /// - Returns: The top layer's chain ID for `LayerStore/createSnapshot(topChainID:at:driver:owners:)`,
    ///   or nil for an image without layers.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/invalidContent`` when the config and
    ///   manifest disagree or a layer is malformed, ``ImageError/Code/digestMismatch`` when a
    ///   layer does not match its diff ID, ``ImageError/Code/unsupported`` for an unknown layer type.
    @discardableResult
    public func unpack(_ image: Image, into layers: LayerStore) async throws(ImageError) -> String? {
        guard image.diffIDs.count == image.layers.count else {
            throw ImageError(
                code: .invalidContent, reference: image.reference?.description, digest: image.id.description,
                detail: "the config lists \(image.diffIDs.count) layers, the manifest \(image.layers.count)")
        }
        let chain = LayerStore.chainIDs(diffIDs: image.diffIDs.map(\.description))
        var jobs: [(diffID: String, parent: String?, blob: String, compression: LayerCompression, digest: Digest)] = []
        for (index, layer) in image.layers.enumerated() where layers.layer(chainID: chain[index]) == nil {
            guard let compression = layer.mediaType.layerCompression else {
                throw ImageError(code: .unsupported, digest: layer.digest.description, detail: "\(layer.mediaType) is not a layer type Berth unpacks")
            }
            guard content.contains(layer.digest) else {
                throw ImageError(code: .notFound, reference: image.reference?.description, digest: layer.digest.description, detail: "layer blob is not in the store")
            }
            jobs.append((image.diffIDs[index].description, index > 0 ? chain[index - 1] : nil, content.path(of: layer.digest), compression, layer.digest))
        }
        let failure = await withTaskGroup(of: ImageError?.self) { group -> ImageError? in
            for job in jobs {
                group.addTask {
                    do {
                        _ = try await layers.unpack(diffID: job.diffID, parentChainID: job.parent, from: .file(job.blob), compression: job.compression)
                        return nil
                    } catch {
                        return ImageError(unpacking: error, digest: job.digest)
                    }
                }
            }
            var first: ImageError?
            for await result in group where first == nil { first = result }
            return first
        }
        if let failure { throw failure }
        return chain.last
    }

    // MARK: busybox

    /// The name of the image ``makeBusyboxImage(from:as:)`` makes: `docker.io/library/busybox:latest`.
    public static let busyboxReference = "docker.io/library/busybox:latest"

    /// Builds a small busybox image from a static busybox binary on this machine, with no network.
    ///
    /// The single layer holds `/bin/busybox` with a symlink per applet it lists, `/etc/passwd`
    /// and `/etc/group` (root, nobody), and empty `/tmp`, `/root`, `/proc`, `/sys`, `/dev`;
    /// the command is `sh`. Every file gets the same fixed modification time, so the same binary
    /// gives the same image on every machine. Debian's `busybox-static` package installs a
    /// suitable binary at `/bin/busybox`.
    ///
    /// - Parameters:
    ///   - binary: A statically linked busybox.
    ///   - reference: The image's name.
    /// - Returns: The image.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` if `binary` does not exist,
    ///   ``ImageError/Code/io`` if it cannot list its applets.
    @discardableResult
    public func makeBusyboxImage(
        from binary: String = "/bin/busybox", as reference: ImageReference? = nil
    ) async throws(ImageError) -> Image {
        guard FileIO.exists(binary) else {
            throw ImageError(code: .notFound, detail: "\(binary) does not exist (Debian: apt-get install busybox-static)")
        }
        var busybox = HostImageContent()
        busybox.config.cmd = ["sh"]
        busybox.executables = [HostImageContent.Item(binary, at: "/bin/busybox")]
        busybox.directories = ["home", "var", "usr/bin", "usr/sbin", "sbin"].map { HostImageContent.Directory("/" + $0) }
        for applet in try Self.applets(of: binary) where applet != "busybox" {
            busybox.symlinks["/bin/" + applet] = "busybox"
        }
        var name = reference
        if name == nil { name = try ImageReference(parsing: Self.busyboxReference) }
        return try await makeImage(from: busybox, as: name)
    }

    /// `busybox --list`: the applet names the binary provides.
    private static func applets(of binary: String) throws(ImageError) -> [String] {
        let result: (status: Int32, output: [UInt8])
        do throws(SystemError) {
            result = try runProgramToEnd([binary, "--list"])
        } catch {
            throw ImageError(code: .io, detail: "run \(binary) --list: \(error)")
        }
        guard result.status == 0 else {
            throw ImageError(code: .io, detail: "\(binary) --list exited with status \(result.status)")
        }
        return String(decoding: result.output, as: UTF8.self).split(separator: "\n").map(String.init)
            .filter { !$0.isEmpty && !$0.contains("/") && $0 != "." && $0 != ".." }
    }
}

extension ImageError {
    /// Wraps an error of the layer store, keeping what kind of failure it was.
    init(unpacking error: any Error, digest: Digest) {
        guard let error = error as? LayerError else {
            self.init(code: .io, digest: digest.description, detail: "unpack layer: \(error)")
            return
        }
        let code: Code =
            switch error.code {
            case .digestMismatch: .digestMismatch
            case .unsafeEntry, .invalidArchive: .invalidContent
            case .unsupported: .unsupported
            case .notFound: .notFound
            default: .io
            }
        self.init(code: code, digest: digest.description, errno: error.errno, detail: "unpack layer: \(error)")
    }
}
