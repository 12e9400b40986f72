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
    /// A running container is paused (frozen) while its files are read, so the archive is one
    /// moment of it, and resumed afterwards, also when the export fails; a paused one stays
    /// paused. A file the container replaces while it is read (with `pause: false`) is never
    /// read as what replaced it: the export fails naming it.
    ///
    /// - Parameters:
    ///   - output: Where the tar goes; the caller keeps ownership.
    ///   - pause: Whether to pause a running container during the export; `false` lets it run.
    /// - Throws: ``ContainerError`` when reading or writing fails (``ContainerError/Code/layer``,
    ///   with a `LayerError` of code `unexpectedFile` for a file that changed), or when a
    ///   running container cannot be paused (``ContainerError/Code/notOwner`` for one another
    ///   process owns); nothing is read then.
    public func export(to output: FileDescriptor, pause: Bool = true) async throws(ContainerError) {
        try await whilePaused(pause) { () throws(ContainerError) in
            _ = try wrapping("export", container: name) { try exportFilesystem(of: directory + "/rootfs", to: output) }
        }
    }

    /// Makes a new image from the container's changes (`docker commit`): the image's layers
    /// plus one layer holding the diff, with a history entry, tagged `reference`.
    ///
    /// A running container is paused (frozen) while its changes are read, as `docker commit`
    /// does, and resumed afterwards, also when the commit fails; a paused one stays paused. A
    /// file the container replaces while it is read (with `pause: false`) is never read as what
    /// replaced it: the commit fails naming it.
    ///
    /// - Parameters:
    ///   - reference: The new image's name (`"app:snapshot"`), or `nil` to leave it unnamed.
    ///   - comment: The history entry's comment (`-m`).
    ///   - pause: Whether to pause a running container while its changes are read
    ///     (`docker commit --pause`); `false` lets it run.
    /// - Returns: The new image; it runs like any other.
    /// - Throws: ``ContainerError``: when a running container cannot be paused
    ///   (``ContainerError/Code/notOwner`` for one another process owns), nothing is read;
    ///   ``ContainerError/Code/layer`` when reading the changes fails.
    public func commit(as reference: String? = nil, comment: String? = nil, pause: Bool = true)
        async throws(ContainerError) -> Image
    {
        let snapshot = try requireSnapshot()
        let layerPath = directory + "/commit-\(randomHex(8)).tar.gz"
        defer { unlink(layerPath) }
        let diff = try await whilePaused(pause) { () throws(ContainerError) in
            try wrapping("write the changes of", container: name) {
                try snapshot.writeDiff(toFile: layerPath, compression: .gzip, excluding: Self.runtimeFiles)
            }
        }
        let target = try wrapping("parse \(reference ?? "")") { try reference.map { try ImageReference(parsing: $0) } }
        let command = configuration.command ?? image.config.config?.cmd ?? []
        let history = ImageConfig.History(createdBy: command.joined(separator: " "), comment: comment)
        return try await wrapping("commit", container: name) {
            try await runtime.images.commit(imageID, layer: LayerBlob(path: layerPath, diff: diff), as: target, history: history)
        }
    }

    /// Runs `body` with the container paused when `pause` and it is running, resuming it after
    /// `body`, whatever `body` did. A container paused already, or not running, is left as it is.
    private func whilePaused<T>(_ pause: Bool, _ body: () throws(ContainerError) -> T) async throws(ContainerError) -> T {
        var paused = false
        if pause && state.status == .running {
            do {
                try await self.pause()
                paused = true
            } catch where error.code == .invalidState {
                // It stopped meanwhile: nothing runs that could change the files. Still running
                // (no cgroup to freeze): the read would not be what the caller asked for.
                guard state.status != .running else { throw error }
            }
        }
        let result = Result { () throws(ContainerError) -> T in try body() }
        if paused {
            do {
                try await resume()
            } catch where error.code == .invalidState {
                // Stopped or killed meanwhile (kill thaws it): nothing to resume.
            }
        }
        return try result.get()
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
