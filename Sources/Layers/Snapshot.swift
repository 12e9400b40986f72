// Snapshots: a container's root filesystem made from a chain of layers. The overlay driver
// stacks the layer directories under a fresh upper/work pair; the copy driver (for file
// systems or kernels where overlay is unavailable) copies the layers into one directory and
// interprets their whiteouts itself.

import CSyscalls
import Crypto
import Glibc
import SystemSupport

/// How a snapshot's root filesystem is made.
public enum SnapshotDriver: String, Sendable, Hashable, CustomStringConvertible {
    /// An overlay mount of the layers with a private upper directory; costs one mount.
    case overlay
    /// A full copy of the layers (reflinked where the file system supports it, through
    /// `copy_file_range`); costs a write of every file.
    case copy

    public var description: String { rawValue }
}

/// A container's root filesystem, made by ``LayerStore/createSnapshot(topChainID:at:driver:owners:)``.
///
/// Everything the snapshot owns lives in its ``directory``: `rootfs/` (the mount point or the
/// copy) and, for overlay, `upper/` and `work/`.
public struct Snapshot: Sendable {
    /// The directory the snapshot was created in (for example `<berth root>/containers/<id>`).
    public let directory: String
    /// The root filesystem to give the container: `<directory>/rootfs`.
    public var rootfs: String { directory + "/rootfs" }
    /// The driver that made the root filesystem.
    public let driver: SnapshotDriver
    /// The layers the snapshot was made from, top first (empty for an empty root).
    public let layers: [Layer]
    /// The shift of the layers' owners the snapshot shows (a user namespace's mapping), or
    /// `nil` for the layers as they are.
    public let owners: OwnerShift?
    let storeRoot: String

    /// The directories of the layers as the snapshot stacks them, top first: the layers', or
    /// their id-shifted copies.
    var lowerPaths: [String] { layers.map { layer in owners.map(layer.shiftedPath) ?? layer.path } }

    /// Overlay's upper directory: the container's changes.
    var upper: String { directory + "/upper" }
    var work: String { directory + "/work" }
    /// Where ``LayerStore/restoreChanges(of:from:)`` puts its copy before the swap.
    var restoring: String { directory + "/restoring" }
    var referencePath: String { Self.referencePath(storeRoot: storeRoot, directory: directory) }

    static func referencePath(storeRoot: String, directory: String) -> String {
        storeRoot + "/.refs/" + digestString(SHA256.hash(data: Array(directory.utf8))).dropFirst("sha256:".count)
    }

    /// Gives the directory that becomes the root filesystem's root the shifted root as owner.
    func ownRoot(_ path: String) throws(LayerError) {
        guard let owners else { return }
        _ = try LayerError.from(try sys("set owner of", path: path) { chown(path, owners.hostID, owners.hostID) })
    }

    /// Unmounts the root filesystem and deletes what the snapshot created, releasing its layers.
    ///
    /// Idempotent: removing a removed snapshot does nothing. The snapshot's ``directory`` is
    /// removed too when nothing else is left in it.
    ///
    /// - Throws: ``LayerError`` with ``LayerError/Code/inUse`` while something still uses the
    ///   mount, or when deleting fails.
    public func remove() throws(LayerError) {
        try deleteFiles()
        let lock = try LayerError.from(try FileLock(storeRoot + "/.locks/store"))
        defer { lock.unlock() }
        try releaseLayers()
    }

    /// Unmounts the root filesystem and deletes `rootfs/`, `upper/`, `work/` and
    /// `restoring/`; takes no lock.
    func deleteFiles() throws(LayerError) {
        try unmount()
        for path in [rootfs, upper, work, restoring] { try LayerError.from(try removeTree(path)) }
    }

    /// Unmounts the root filesystem, if it is mounted.
    func unmount() throws(LayerError) {
        while umount2(rootfs, 0) != 0 {
            switch Glibc.errno {
            case EINTR: continue
            case EINVAL, ENOENT: break  // not (or no longer) a mount point
            case EBUSY:
                throw LayerError(code: .inUse, entry: rootfs, errno: .resourceBusy, detail: "unmount \"\(rootfs)\"")
            default:
                throw LayerError(code: .io, entry: rootfs, errno: .init(rawValue: Glibc.errno),
                                 detail: "unmount \"\(rootfs)\"")
            }
            break
        }
    }

    /// Deletes the reference that keeps the layers in use, and the directory when it is empty.
    /// The caller holds the store's lock.
    func releaseLayers() throws(LayerError) {
        if unlink(referencePath) != 0 && Glibc.errno != ENOENT {
            throw LayerError(code: .io, entry: referencePath, errno: .init(rawValue: Glibc.errno),
                             detail: "release the layers of \"\(directory)\"")
        }
        _ = rmdir(directory)  // fails, harmlessly, while the caller keeps other files there
    }
}

extension LayerStore {
    /// What a snapshot's reference file records.
    struct SnapshotReference {
        var directory: String
        var driver: SnapshotDriver
        var owners: OwnerShift?
        var chainIDs: [String]
    }

    /// Makes a container's root filesystem from a chain of layers.
    ///
    /// With overlay, `<directory>/rootfs` is an overlay mount of the chain's layer directories
    /// over fresh `upper/` and `work/` directories: with the new mount API's `lowerdir+` on
    /// Linux 6.8 and later, with a classic `lowerdir=` option string before (the layers as
    /// `/proc/self/fd/N` when their paths do not fit in one page). Where overlay cannot be
    /// mounted (no overlay in the kernel, or a file system it cannot use for `upper/`) and no
    /// driver was asked for, the copy driver is used instead; ``Snapshot/driver`` tells which.
    ///
    /// Costs one mount with overlay; a copy of every layer with the copy driver.
    ///
    /// With `owners` (a container in a user namespace), the snapshot stacks copies of the layers
    /// whose files have the shifted owners, so that the namespace maps them back to the image's:
    /// one copy per layer and shift, made by the first snapshot that needs it and shared, read
    /// only, by every snapshot with the same shift; the snapshot's own root directory is owned by
    /// the shifted root.
    ///
    /// - Parameters:
    ///   - topChainID: The chain ID of the top layer; `nil` for an empty root.
    ///   - directory: The directory to create the snapshot in; created if missing.
    ///   - driver: The driver to use, or `nil` to choose (overlay, else copy).
    ///   - owners: The shift of the files' owners, or `nil` to keep them.
    /// - Returns: The snapshot; remove it with ``Snapshot/remove()``.
    /// - Throws: ``LayerError`` with ``LayerError/Code/notFound`` when a layer of the chain is
    ///   not unpacked, ``LayerError/Code/inUse`` when a snapshot already exists at `directory`.
    public func createSnapshot(topChainID: String?, at directory: String, driver: SnapshotDriver? = nil,
                               owners: OwnerShift? = nil) throws(LayerError) -> Snapshot
    {
        try createSnapshot(topChainID: topChainID, at: directory, driver: driver, owners: owners, overlayOptions: nil)
    }

    /// ``createSnapshot(topChainID:at:driver:owners:)`` with the way overlay gets its layers
    /// fixed (`nil`: the first the kernel accepts), so tests can try each on any kernel.
    func createSnapshot(topChainID: String?, at directory: String, driver: SnapshotDriver?, owners: OwnerShift? = nil,
                        overlayOptions: OverlayOptions?) throws(LayerError) -> Snapshot
    {
        let lock = try LayerError.from(try FileLock(locksDirectory + "/store"))
        defer { lock.unlock() }
        let layers = try topChainID.map { id throws(LayerError) in try chain(topChainID: id) } ?? []
        let referencePath = Snapshot.referencePath(storeRoot: root, directory: directory)
        guard access(referencePath, F_OK) != 0 else {
            throw LayerError(code: .inUse, entry: directory, detail: "a snapshot already exists at \"\(directory)\"")
        }
        if let owners { try makeShiftedLayers(layers, owners) }
        try LayerError.from(try makeDirectories(directory, mode: 0o711))
        var snapshot = Snapshot(directory: directory, driver: driver ?? .overlay, layers: layers, owners: owners, storeRoot: root)
        do throws(LayerError) {
            if snapshot.driver == .overlay {
                do throws(LayerError) {
                    try LayerError.from(try makeDirectories(snapshot.upper, mode: 0o755))
                    try snapshot.ownRoot(snapshot.upper)  // overlay's root is the upper directory's
                    try mountOverlay(snapshot, options: overlayOptions)
                } catch where driver == nil && error.code == .unsupported {
                    logger.notice("overlay is unavailable, using the copy driver", metadata: [
                        "directory": "\(directory)", "error": "\(error)"])
                    // Not remove(): that takes the store's lock, which this function holds.
                    try snapshot.deleteFiles()
                    try LayerError.from(try makeDirectories(directory, mode: 0o711))
                    snapshot = Snapshot(directory: directory, driver: .copy, layers: layers, owners: owners, storeRoot: root)
                }
            }
            if snapshot.driver == .copy {
                try LayerError.from(try makeDirectories(snapshot.rootfs, mode: 0o755))
                try snapshot.ownRoot(snapshot.rootfs)
                for layer in snapshot.lowerPaths.reversed() { try copyLayer(layer, into: snapshot.rootfs) }
            }
            let driverLine = snapshot.driver.rawValue + (owners.map { " " + $0.name } ?? "")
            let record = [directory, driverLine] + layers.map(\.chainID)
            try LayerError.from(try writeAtomically(referencePath, Array((record.joined(separator: "\n") + "\n").utf8)))
        } catch {
            try? snapshot.deleteFiles()
            try? snapshot.releaseLayers()
            throw error
        }
        return snapshot
    }

    /// The snapshot previously created at `directory` (by this or another process), or `nil`.
    ///
    /// - Parameter directory: The directory given to ``createSnapshot(topChainID:at:driver:owners:)``.
    public func snapshot(at directory: String) -> Snapshot? {
        guard let bytes = try? readWholeFile(Snapshot.referencePath(storeRoot: root, directory: directory)),
            let reference = Self.parseReference(String(decoding: bytes, as: UTF8.self)),
            let layers = try? reference.chainIDs.first.map({ id throws(LayerError) in try chain(topChainID: id) }) ?? []
        else { return nil }
        return Snapshot(directory: directory, driver: reference.driver, layers: layers, owners: reference.owners, storeRoot: root)
    }

    func snapshotReferences() throws(LayerError) -> [SnapshotReference] {
        try LayerError.from(try directoryEntries(atPath: refsDirectory)).compactMap { entry in
            (try? readWholeFile(refsDirectory + "/" + entry.name)).flatMap { Self.parseReference(String(decoding: $0, as: UTF8.self)) }
        }
    }

    private static func parseReference(_ text: String) -> SnapshotReference? {
        // Line 2: the driver, and the owner shift after a space when there is one.
        let lines = text.split(separator: "\n").map(String.init)
        guard lines.count >= 2 else { return nil }
        let words = lines[1].split(separator: " ")
        guard let first = words.first, let driver = SnapshotDriver(rawValue: String(first)), words.count <= 2 else { return nil }
        var owners: OwnerShift?
        if words.count == 2 {
            guard let shift = OwnerShift(name: words[1]) else { return nil }
            owners = shift
        }
        return SnapshotReference(directory: lines[0], driver: driver, owners: owners, chainIDs: Array(lines[2...]))
    }

    /// Mounts overlay at the snapshot's rootfs, in the first way the kernel accepts.
    ///
    /// 1. The new mount API with one `lowerdir+` per layer (Linux 6.8): no limit but overlay's
    ///    own (500 layers).
    /// 2. Classic `lowerdir=a:b:c` in mount(2)'s option string, which must fit in a page (every
    ///    kernel with overlay; Debian 12's 6.1, Ubuntu 22.04's 5.15, RHEL 9's 5.14).
    /// 3. When the layer paths do not fit in a page, the same with each layer as
    ///    `/proc/self/fd/N` of an `O_PATH` descriptor: about 17 bytes a layer, so some 230
    ///    layers. (Not Docker's relative paths from a changed working directory: the working
    ///    directory belongs to every thread of the embedding process.)
    ///
    /// Throws ``LayerError/Code/unsupported`` when the kernel has no overlay or refuses the
    /// directories (an upper directory on a file system overlay cannot use, such as overlayfs).
    func mountOverlay(_ snapshot: Snapshot, options: OverlayOptions?) throws(LayerError) {
        try LayerError.from(try makeDirectories(snapshot.upper, mode: 0o755))
        try LayerError.from(try makeDirectories(snapshot.work, mode: 0o700))
        try LayerError.from(try makeDirectories(snapshot.rootfs, mode: 0o755))
        let lowers = snapshot.layers.isEmpty ? [emptyDirectory] : snapshot.lowerPaths
        if options == nil || options == .appended {
            do throws(LayerError) {
                return try mountOverlayAppending(snapshot, lowers: lowers)
            } catch where options == nil && error.code == .unsupported {
                // Before 6.8: `lowerdir+` is an unknown option (EINVAL). Anything else that
                // made overlay refuse fails the classic mount below in the same way.
            }
        }
        if options == nil || options == .classic,
            let data = Self.classicOverlayOptions(lowers: lowers, upper: snapshot.upper, work: snapshot.work)
        {
            return try mountOverlayClassic(snapshot, data: data)
        }
        guard options == nil || options == .descriptors else {
            throw LayerError(code: .unsupported, entry: snapshot.rootfs,
                             detail: "mount overlay at \"\(snapshot.rootfs)\": \(lowers.count) layer paths do not fit in one page")
        }
        var descriptors: [OwnedFD] = []
        for lower in lowers {
            descriptors.append(try LayerError.from(try OwnedFD(opening: lower, flags: CK_O_PATH | O_DIRECTORY)))
        }
        guard let data = Self.classicOverlayOptions(lowers: descriptors.map { "/proc/self/fd/\($0.raw)" },
                                                   upper: snapshot.upper, work: snapshot.work)
        else {
            throw LayerError(code: .unsupported, entry: snapshot.rootfs,
                             detail: "mount overlay at \"\(snapshot.rootfs)\": too many layers (\(lowers.count)) for one mount")
        }
        try mountOverlayClassic(snapshot, data: data)
        withExtendedLifetime(descriptors) {}
    }

    /// The mount(2) option string for overlay, `nil` when it does not fit in a page.
    ///
    /// Backslash escapes what overlay would split on: `,` between options, `:` between lower
    /// directories (overlayfs.rst, "Sharing and copying layers"; fs/overlayfs/params.c).
    static func classicOverlayOptions(lowers: [String], upper: String, work: String) -> String? {
        func escaped(_ path: String, _ special: Set<Character>) -> String {
            var result = ""
            for character in path {
                if special.contains(character) { result.append("\\") }
                result.append(character)
            }
            return result
        }
        let data = "lowerdir=" + lowers.map { escaped($0, ["\\", ":", ","]) }.joined(separator: ":")
            + ",upperdir=" + escaped(upper, ["\\", ","]) + ",workdir=" + escaped(work, ["\\", ","])
        // copy_mount_options copies at most one page, the terminating NUL included.
        return data.utf8.count < sysconf(Int32(_SC_PAGESIZE)) ? data : nil
    }

    private func overlayError(_ snapshot: Snapshot, _ what: String) -> LayerError {
        let err = Glibc.errno
        let unsupported = [ENOSYS, ENODEV, EINVAL, EOPNOTSUPP, EPERM].contains(err)
        return LayerError(code: unsupported ? .unsupported : .io, entry: snapshot.rootfs,
                          errno: .init(rawValue: err), detail: "mount overlay at \"\(snapshot.rootfs)\": \(what)")
    }

    /// Mounts with mount(2) and a classic option string.
    private func mountOverlayClassic(_ snapshot: Snapshot, data: String) throws(LayerError) {
        while mount("overlay", snapshot.rootfs, "overlay", 0, data) != 0 {
            if Glibc.errno == EINTR { continue }
            throw overlayError(snapshot, "mount with lowerdir=… (\(data.utf8.count) bytes of options)")
        }
    }

    /// Mounts with fsopen/fsconfig/fsmount/move_mount and one `lowerdir+` per layer.
    private func mountOverlayAppending(_ snapshot: Snapshot, lowers: [String]) throws(LayerError) {
        func fail(_ what: String) -> LayerError { overlayError(snapshot, what) }
        let context = ck_fsopen("overlay")
        guard context >= 0 else { throw fail("fsopen") }
        defer { close(context) }
        func set(_ key: String, _ value: String) throws(LayerError) {
            guard ck_fsconfig_string(context, key, value) == 0 else { throw fail("\(key)=\(value)") }
        }
        // lowerdir+ takes the layers top first, one per call (Linux 6.8, overlayfs.rst).
        for lower in lowers { try set("lowerdir+", lower) }
        try set("upperdir", snapshot.upper)
        try set("workdir", snapshot.work)
        guard ck_fsconfig_create(context) == 0 else { throw fail("create") }
        let mount = ck_fsmount(context)
        guard mount >= 0 else { throw fail("fsmount") }
        defer { close(mount) }
        guard ck_move_mount(mount, AT_FDCWD, snapshot.rootfs) == 0 else { throw fail("move_mount") }
    }
}

/// How the overlay driver passes the layers to the kernel; `nil` tries them in order.
enum OverlayOptions: Sendable {
    /// The new mount API, one `lowerdir+` per layer (Linux 6.8).
    case appended
    /// mount(2) with `lowerdir=a:b:c` of the layer paths.
    case classic
    /// mount(2) with `lowerdir=` of `/proc/self/fd/N` of each layer.
    case descriptors
}
