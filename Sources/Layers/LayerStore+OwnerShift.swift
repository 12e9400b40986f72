// Id-shifted layers, for containers in a user namespace: the image's files belong to host ids
// 0…65535, which the namespace does not map (the container would see them as nobody's, and its
// root could not write them). Rather than a chown'ed copy of the whole root filesystem per
// container (on overlay a chown copies every file up), the store keeps, per layer and mapping,
// one copy of the layer whose owners are the mapped ones: made the first time a snapshot needs
// it, read-only to every container (overlay never writes a lower layer), shared by all the
// containers with that mapping, and removed with the layer.
//
// An idmapped mount of each lower layer (mount_setattr MOUNT_ATTR_IDMAP, overlay accepts them
// from Linux 5.19) would give the same view without the copy, but needs a user namespace with
// the mapping to exist at mount time and, before Linux 6.15, each idmapped layer attached in
// the host's mount table while overlay is mounted; not done.

import Glibc
import SystemSupport

/// A shift of file owners: ids `0..<size` become `hostID + id`, as a user namespace maps them.
///
/// Ids at or above `size` stay as they are (the namespace shows them as nobody's).
public struct OwnerShift: Sendable, Hashable {
    /// The host id that id 0 becomes.
    public var hostID: UInt32
    /// How many consecutive ids are shifted.
    public var size: UInt32

    /// Shifts ids `0..<size` to `hostID..<hostID + size`.
    ///
    /// - Parameters:
    ///   - hostID: The host id of id 0.
    ///   - size: How many ids.
    public init(hostID: UInt32, size: UInt32) {
        self.hostID = hostID
        self.size = size
    }

    /// The host id of `id`.
    func shifted(_ id: UInt32) -> UInt32 { id < size ? hostID + id : id }

    /// How a snapshot's reference file and a shifted layer's directory name it.
    var name: String { "\(hostID)-\(size)" }

    init?(name: Substring) {
        let parts = name.split(separator: "-")
        guard parts.count == 2, let hostID = UInt32(parts[0]), let size = UInt32(parts[1]) else { return nil }
        self.init(hostID: hostID, size: size)
    }
}

extension Layer {
    /// Where the copy of the layer with `owners` lives: `<root>/<layer>/shifted/<host>-<size>`,
    /// inside the layer's own directory, so that removing the layer removes it.
    func shiftedPath(_ owners: OwnerShift) -> String {
        String(path.dropLast("/diff".count)) + "/shifted/" + owners.name
    }
}

extension LayerStore {
    /// Makes the copy of each of `layers` with `owners` that the store does not have yet.
    ///
    /// Each is written in the store's temporary directory and renamed into place, so a copy
    /// that exists is complete. The caller holds the store's lock (no other process makes the
    /// same copy meanwhile). Costs a copy of each layer the first time (contents through
    /// `copy_file_range`, a reflink where the file system can), nothing after.
    func makeShiftedLayers(_ layers: [Layer], _ owners: OwnerShift) throws(LayerError) {
        for layer in layers {
            let path = layer.shiftedPath(owners)
            guard access(path, F_OK) != 0 else { continue }
            // Named after the layer, as an unpack's is: collectGarbage(keeping:) removes it
            // when a process died making it.
            let temporary = tmpDirectory + "/\(try Self.hex(layer.chainID))-shift-\(owners.name)-\(UInt32.random(in: 0...UInt32.max))"
            do throws(LayerError) {
                let from = try LayerError.from(try OwnedFD(opening: layer.path, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW))
                try LayerError.from(try makeDirectories(temporary, mode: 0o700))
                let to = try LayerError.from(try OwnedFD(opening: temporary, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW))
                var copier = TreeCopier(destinationRoot: to.raw, verbatim: true, owners: owners)
                try copier.copyDirectory(from: from.raw, to: to.raw, path: "")
                var st = stat()
                _ = try LayerError.from(try sys("stat", path: layer.path) { fstat(from.raw, &st) })
                try copier.copyMetadata(st, xattrs: readXattrs(fd: from.raw, path: layer.path), to: to.raw, path: path)
                // Root's alone: the copies' owners are host ids that other users may hold.
                let parent = String(path.dropLast(owners.name.count + 1))
                try LayerError.from(try makeDirectories(parent, mode: 0o700))
                _ = try LayerError.from(try sys("rename into", path: path) { rename(temporary, path) })
                logger.debug("made an id-shifted copy of a layer", metadata: ["layer": "\(layer.chainID)", "owners": "\(owners.name)"])
            } catch {
                try? LayerError.from(try removeTree(temporary))
                throw error
            }
        }
    }
}
