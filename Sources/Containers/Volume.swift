import ContainerKernel
public import FoundationEssentials
import Glibc
import Layers
import SystemSupport

/// A named volume: a directory of the runtime's root that outlives the containers that mount
/// it (`docker volume`).
///
/// Its data lives in ``mountpoint``, `<root>/volumes/<name>/_data`, as in Docker. Mount it
/// with ``ContainerMount/volume(name:target:readOnly:)``; a volume a container names but that
/// does not exist is created with the container.
///
/// ```swift
/// let volume = try runtime.createVolume(name: "cache")
/// var config = ContainerConfiguration(image: "busybox", command: ["sh", "-c", "date > /cache/last"])
/// config.mounts = [.volume(name: volume.name, target: "/cache", readOnly: false)]
/// _ = try await runtime.run(config)
/// ```
public struct Volume: Sendable, Hashable, Codable {
    /// The name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`; 64 hex digits when it was generated).
    public var name: String
    /// The host directory that holds the data and is bind-mounted into containers.
    public var mountpoint: String
    /// When the volume was created.
    public var created: Date
    /// The labels given at creation.
    public var labels: [String: String]
}

/// What `<root>/volumes/<name>/volume.json` records.
struct VolumeRecord: Codable {
    var name: String
    var created: Date
    var labels: [String: String]
    /// Whether a container has mounted the volume. The image's content is copied up only
    /// before that, so a volume the user emptied is not filled again (Docker's rule).
    var initialized: Bool
}

extension ContainerRuntime {
    var volumesDirectory: String { root + "/volumes" }

    /// The host directory holding the data of the volume `name`.
    func volumeDataPath(_ name: String) -> String { volumesDirectory + "/" + name + "/_data" }

    /// Creates a named volume (`docker volume create`); an existing volume of that name is
    /// returned as it is, as Docker does.
    ///
    /// - Parameters:
    ///   - name: The name; `nil` generates 64 hex digits, as Docker does.
    ///   - labels: Labels for the volume (ignored when it already exists).
    /// - Returns: The volume.
    /// - Throws: ``ContainerError`` with ``ContainerError/Code/invalidArgument`` for a name
    ///   outside `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, ``ContainerError/Code/io`` when the volume's
    ///   directory or metadata cannot be written.
    @discardableResult
    public func createVolume(name: String? = nil, labels: [String: String] = [:]) throws(ContainerError) -> Volume {
        let name = name ?? randomHex(64)
        try validateName(name, of: "volume")
        return try withVolumesLocked { () throws(ContainerError) in
            Volume(try ensureVolume(name, labels: labels), runtime: self)
        }
    }

    /// The volume with this name (`docker volume inspect`).
    ///
    /// - Parameter name: The volume's name.
    /// - Returns: The volume.
    /// - Throws: ``ContainerError/Code/notFound`` when there is no such volume,
    ///   ``ContainerError/Code/invalidArgument`` for an invalid name.
    public func volume(_ name: String) throws(ContainerError) -> Volume {
        try validateName(name, of: "volume")
        return Volume(try loadVolumeRecord(name), runtime: self)
    }

    /// Every volume of the runtime, by name (`docker volume ls`).
    ///
    /// - Returns: The volumes, sorted by name.
    /// - Throws: ``ContainerError/Code/io`` when the volumes directory cannot be read.
    public func volumes() throws(ContainerError) -> [Volume] {
        guard access(volumesDirectory, F_OK) == 0 else { return [] }
        return try ContainerError.from(try directoryEntries(atPath: volumesDirectory)).map(\.name)
            .filter { (try? validateName($0, of: "volume")) != nil }
            .compactMap { try? Volume(loadVolumeRecord($0), runtime: self) }
            .sorted { $0.name < $1.name }
    }

    /// Removes a volume and its data (`docker volume rm`), refusing while a container of the
    /// runtime mounts it, in any state.
    ///
    /// The containers are read from the root's records, so a container another process holds
    /// counts too.
    ///
    /// - Parameters:
    ///   - name: The volume's name.
    ///   - force: Do not fail when the volume does not exist (`-f`). As in Docker, it does not
    ///     remove a volume in use.
    /// - Throws: ``ContainerError`` with ``ContainerError/Code/inUse`` while containers mount
    ///   it (``ContainerError/container`` names them), ``ContainerError/Code/notFound`` when
    ///   there is no such volume and `force` is off, ``ContainerError/Code/io`` when deleting
    ///   fails.
    public func removeVolume(_ name: String, force: Bool = false) throws(ContainerError) {
        try validateName(name, of: "volume")
        try withVolumesLocked { () throws(ContainerError) in
            guard access(volumeRecordPath(name), F_OK) == 0 else {
                if force { return }
                throw ContainerError(code: .notFound, detail: "no such volume \(name)")
            }
            if let users = volumeUsers()[name] {
                throw ContainerError(code: .inUse, container: users.sorted().joined(separator: ", "),
                                     detail: "remove volume \(name): it is in use by")
            }
            // Moved aside first, so that a removal that fails half-way leaves no half a volume
            // under the name.
            let directory = volumesDirectory + "/" + name
            let doomed = volumesDirectory + "/.removing-" + randomHex(16)
            guard rename(directory, doomed) == 0 else {
                throw ContainerError(code: .io, detail: "remove volume \(name): rename: \(SystemError.message(for: .init(rawValue: errno)))")
            }
            try ContainerError.from(try removeTree(doomed))
        }
    }

    /// Removes every volume no container of the runtime mounts (`docker volume prune --all`).
    ///
    /// - Returns: The names of the removed volumes.
    /// - Throws: ``ContainerError/Code/io`` when listing or deleting fails.
    public func pruneVolumes() throws(ContainerError) -> [String] {
        let users = volumeUsers()
        var removed: [String] = []
        for volume in try volumes() where users[volume.name] == nil {
            do throws(ContainerError) {
                try removeVolume(volume.name)
                removed.append(volume.name)
            } catch where error.code == .inUse || error.code == .notFound {
                continue  // mounted or removed since the listing
            }
        }
        return removed
    }

    /// Creates the named volumes of a container that do not exist yet and, for each volume no
    /// container has mounted before, copies the image's content at the mount's target into it
    /// when the volume is empty (Docker's copy-up: owners, modes, symlinks, hard links and
    /// xattrs are kept).
    ///
    /// The copy is made in a staging directory outside the volume lock and moved into place
    /// under it, so a slow copy does not hold up other containers' volumes.
    ///
    /// - Parameters:
    ///   - configuration: The container's configuration.
    ///   - rootfs: The container's prepared root filesystem, read for the copy-up.
    func prepareVolumes(for configuration: ContainerConfiguration, rootfs: String) async throws(ContainerError) {
        for case .volume(let name, let target, _) in configuration.mounts {
            try validateName(name, of: "volume")
            let record = try withVolumesLocked { () throws(ContainerError) in try ensureVolume(name, labels: [:]) }
            guard !record.initialized else { continue }
            // Named after this process, so that the next runtime can tell a dead one's leftover.
            let staging = volumesDirectory + "/.copy-\(getpid())-\(processStartTime(getpid()) ?? 0)-" + randomHex(8)
            try ContainerError.from(try makeDirectories(staging, mode: 0o755))
            defer { try? removeTree(staging) }  // nothing left there once moved into place
            let copied = try await wrapping("copy \(target) of the image into volume \(name)") {
                try await copyDirectory(at: target, inRoot: rootfs, into: staging)
            }
            try withVolumesLocked { () throws(ContainerError) in
                guard var current = try? loadVolumeRecord(name), !current.initialized else { return }
                let data = volumeDataPath(name)
                // rename(2) replaces an empty directory; content the user put there first wins.
                if copied, try ContainerError.from(try directoryEntries(atPath: data)).isEmpty, rename(staging, data) != 0 {
                    throw ContainerError(code: .io, detail: "copy \(target) of the image into volume \(name): rename: \(SystemError.message(for: .init(rawValue: errno)))")
                }
                current.initialized = true
                try writeVolumeRecord(current)
            }
        }
    }

    /// Removes what processes that died while copying up or removing a volume left in the
    /// volumes directory: removals happen under the volumes lock, so every `.removing-*` seen
    /// holding it is left over; a `.copy-<pid>-<start time>-*` is once its process is gone.
    ///
    /// - Returns: The names removed.
    func removeVolumeLeftovers() -> [String] {
        guard access(volumesDirectory, F_OK) == 0 else { return [] }
        return (try? withVolumesLocked { () throws(ContainerError) -> [String] in
            var removed: [String] = []
            for name in try ContainerError.from(try directoryEntries(atPath: volumesDirectory)).map(\.name) {
                let parts = name.split(separator: "-")
                let copyOfDeadProcess = name.hasPrefix(".copy-") && parts.count == 4
                    && !isAlive(Int32(parts[1]) ?? 0, UInt64(parts[2]) ?? 0)
                if name.hasPrefix(".removing-") || copyOfDeadProcess, (try? removeTree(volumesDirectory + "/" + name)) != nil {
                    removed.append(name)
                }
            }
            return removed
        }) ?? []
    }

    /// The names of the containers that mount each volume, from every container record on the
    /// root (also those of containers other processes hold).
    private func volumeUsers() -> [String: Set<String>] {
        var users: [String: Set<String>] = [:]
        for id in ((try? directoryEntries(atPath: containersDirectory)) ?? []).map(\.name) where id != ".lock" {
            guard let record = try? Container.loadRecord(containersDirectory + "/" + id) else { continue }
            for case .volume(let name, _, _) in record.configuration.mounts {
                users[name, default: []].insert(record.name)
            }
        }
        return users
    }

    /// The volume's record, creating the volume when it does not exist. Call with the volumes
    /// lock held.
    private func ensureVolume(_ name: String, labels: [String: String]) throws(ContainerError) -> VolumeRecord {
        if access(volumeRecordPath(name), F_OK) == 0 { return try loadVolumeRecord(name) }
        try ContainerError.from(try makeDirectories(volumesDirectory + "/" + name, mode: 0o711))
        try ContainerError.from(try makeDirectories(volumeDataPath(name), mode: 0o755))
        // Whole seconds, as the ISO 8601 record keeps them: the volume returned now equals the
        // one read back later.
        let created = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let record = VolumeRecord(name: name, created: created, labels: labels, initialized: false)
        try writeVolumeRecord(record)
        return record
    }

    private func volumeRecordPath(_ name: String) -> String { volumesDirectory + "/" + name + "/volume.json" }

    private func loadVolumeRecord(_ name: String) throws(ContainerError) -> VolumeRecord {
        let path = volumeRecordPath(name)
        guard access(path, F_OK) == 0 else { throw ContainerError(code: .notFound, detail: "no such volume \(name)") }
        let bytes = try ContainerError.from(try readWholeFile(path))
        return try wrapping("decode \(path)") { try jsonDecoder.decode(VolumeRecord.self, from: Data(bytes)) }
    }

    private func writeVolumeRecord(_ record: VolumeRecord) throws(ContainerError) {
        let bytes = try wrapping("encode volume \(record.name)") { try jsonEncoder.encode(record) }
        try ContainerError.from(try writeAtomically(volumeRecordPath(record.name), Array(bytes)))
    }

    /// Runs `body` holding `<root>/volumes/.lock`, which orders creation, copy-up and removal
    /// of volumes between the runtimes of every process on the root. Held only for metadata
    /// changes and renames, never for a copy.
    private func withVolumesLocked<T>(_ body: () throws(ContainerError) -> T) throws(ContainerError) -> T {
        try ContainerError.from(try makeDirectories(volumesDirectory, mode: 0o711))
        let lock = try ContainerError.from(try FileLock(volumesDirectory + "/.lock"))
        defer { lock.unlock() }
        return try body()
    }
}

extension Volume {
    init(_ record: VolumeRecord, runtime: ContainerRuntime) {
        self.init(name: record.name, mountpoint: runtime.volumeDataPath(record.name), created: record.created,
                  labels: record.labels)
    }
}
