import Glibc
import Layers
import SystemSupport

extension Container {
    /// Copies the container's filesystem state into `directory`: what its root filesystem
    /// changed (`rootfs/`) and the data of each named volume it mounts (`volumes/<name>/`).
    ///
    /// A running container is frozen with its cgroup's freezer while the copy is made, so the
    /// copy is one moment of it, and thawed after; a paused, created or exited one is copied
    /// as it is. Files are copied with `copy_file_range` (a reflink on Btrfs and XFS). Bind
    /// mounts and tmpfs mounts are not part of the state.
    ///
    /// ```swift
    /// try await container.saveFilesystem(to: "/var/tmp/db-state")
    /// // … the container changes its files …
    /// _ = try await container.stop()
    /// try await container.restoreFilesystem(from: "/var/tmp/db-state")
    /// try await container.start()
    /// ```
    ///
    /// - Parameter directory: Where to write the copy: a directory that does not exist or is
    ///   empty.
    /// - Throws: ``ContainerError`` with ``ContainerError/Code/layer`` when copying fails,
    ///   ``ContainerError/Code/invalidState`` while it is being removed.
    public func saveFilesystem(to directory: String) async throws(ContainerError) {
        try requireOwnership("save the filesystem of")
        let snapshot = try rootSnapshot("save the filesystem of")
        let frozen = state.status == .running
        if frozen { try await pause() }
        var failure: ContainerError?
        do {
            try await wrapping("save the filesystem of", container: name) {
                try await BlockingPool.shared.run { [self] () throws(LayerError) in
                    try runtime.layers.saveChanges(of: snapshot, to: directory + "/rootfs")
                    for volume in namedVolumes {
                        try cloneTree(runtime.volumeDataPath(volume), into: directory + "/volumes/" + volume)
                    }
                }
            }
        } catch {
            failure = error
        }
        if frozen { try await resume() }
        if let failure { throw failure }
    }

    /// Puts back the filesystem state that ``saveFilesystem(to:)`` copied: the root
    /// filesystem's changes since then are undone, and each named volume's data replaced with
    /// the saved copy.
    ///
    /// All or nothing: everything is copied aside first and swapped in at once
    /// (`RENAME_EXCHANGE`), so that a copy that fails (a saved file that cannot be read, a
    /// full disk) leaves the container's files as they were, and no partial copy behind.
    ///
    /// The container must be created or exited (stop it first); a ``start()`` made meanwhile
    /// waits for the restore. The saved copy is kept and can be restored again.
    ///
    /// - Parameter directory: The directory ``saveFilesystem(to:)`` wrote.
    /// - Throws: ``ContainerError`` with ``ContainerError/Code/invalidState`` unless created or
    ///   exited, ``ContainerError/Code/layer`` when copying or mounting fails.
    public func restoreFilesystem(from directory: String) async throws(ContainerError) {
        try requireOwnership("restore the filesystem of")
        let snapshot = try rootSnapshot("restore the filesystem of")
        // Reserved as a start, so that nothing starts on a half-restored root: a start()
        // arriving meanwhile joins, gets no result and decides again once this is done.
        try live.withLock { live throws(ContainerError) in
            guard case .idle = live.phase else { throw live.refusal("restore the filesystem of") }
            live.phase = .starting(joiners: [])
        }
        var failure: ContainerError?
        do {
            try await wrapping("restore the filesystem of", container: name) {
                try await BlockingPool.shared.run { [self] () throws(LayerError) in
                    // All or nothing: the volumes' copies are made next to their data first, the
                    // root filesystem is restored (itself all or nothing), then each copy is
                    // swapped in at once and the old data deleted.
                    let volumes = namedVolumes.map { name in
                        (data: runtime.volumeDataPath(name), copy: runtime.volumesDirectory + "/" + name + "/restoring",
                         saved: directory + "/volumes/" + name)
                    }
                    do throws(LayerError) {
                        for volume in volumes {
                            try LayerError.from(try removeTree(volume.copy))  // left by a process killed in the middle
                            try cloneTree(volume.saved, into: volume.copy)
                        }
                        try runtime.layers.restoreChanges(of: snapshot, from: directory + "/rootfs")
                    } catch {
                        for volume in volumes { try? removeTree(volume.copy) }
                        throw error
                    }
                    for volume in volumes {
                        try exchange(volume.copy, volume.data)
                        try LayerError.from(try removeTree(volume.copy))  // the old data
                    }
                }
            }
        } catch {
            failure = error
        }
        update { $0.endStart() }.forEach { $0.resume(returning: nil) }
        if let failure { throw failure }
    }

    /// The container's root filesystem snapshot, for `operation`.
    private func rootSnapshot(_ operation: String) throws(ContainerError) -> Snapshot {
        guard let snapshot = runtime.layers.snapshot(at: directory) else {
            throw ContainerError(code: .invalidState, container: name, detail: "cannot \(operation) a container without a root filesystem:")
        }
        return snapshot
    }

    /// The named volumes the container mounts.
    private var namedVolumes: [String] {
        configuration.mounts.compactMap { mount in
            if case .volume(let name, _, _) = mount { name } else { nil }
        }
    }
}
