import Glibc
public import Images
public import Layers
public import SystemPackage

extension Container {
    /// The changes of the container's filesystem against its image (`docker diff`).
    ///
    /// - Returns: Added, changed and deleted paths.
    /// - Throws: ``ContainerError`` when the root filesystem cannot be read.
    public func changes() throws(ContainerError) -> [Change] {
        try wrapping("diff", container: name) { try requireSnapshot().changes(excluding: Self.runtimeFiles) }
    }

    /// Writes the container's whole filesystem as a tar stream (`docker export`).
    ///
    /// - Parameter output: Where the tar goes; the caller keeps ownership.
    /// - Throws: ``ContainerError`` when reading or writing fails.
    public func export(to output: FileDescriptor) throws(ContainerError) {
        _ = try wrapping("export", container: name) { try exportFilesystem(of: directory + "/rootfs", to: output) }
    }

    /// Makes a new image from the container's changes (`docker commit`): the image's layers
    /// plus one layer holding the diff, with a history entry, tagged `reference`.
    ///
    /// - Parameters:
    ///   - reference: The new image's name (`"app:snapshot"`), or `nil` to leave it unnamed.
    ///   - comment: The history entry's comment (`-m`).
    /// - Returns: The new image; it runs like any other.
    /// - Throws: ``ContainerError``.
    public func commit(as reference: String? = nil, comment: String? = nil) async throws(ContainerError) -> Image {
        let snapshot = try requireSnapshot()
        let layerPath = directory + "/commit-\(randomHex(8)).tar.gz"
        defer { unlink(layerPath) }
        let diff = try wrapping("write the changes of", container: name) {
            try snapshot.writeDiff(toFile: layerPath, compression: .gzip, excluding: Self.runtimeFiles)
        }
        let target = try wrapping("parse \(reference ?? "")") { try reference.map { try ImageReference(parsing: $0) } }
        let command = configuration.command ?? image.config.config?.cmd ?? []
        let history = ImageConfig.History(createdBy: command.joined(separator: " "), comment: comment)
        return try await wrapping("commit", container: name) {
            try await runtime.images.commit(imageID, layer: LayerBlob(path: layerPath, diff: diff), as: target, history: history)
        }
    }

    /// The files Berth bind-mounts into every container: their mount points are not the
    /// container's changes, so `diff` and `commit` leave them out, as Docker does.
    static let runtimeFiles: Set<String> = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]

    func requireSnapshot() throws(ContainerError) -> Snapshot {
        guard let snapshot = runtime.layers.snapshot(at: directory) else {
            throw ContainerError(code: .layer, container: name, detail: "no root filesystem for")
        }
        return snapshot
    }
}
