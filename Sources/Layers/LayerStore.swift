// The store of unpacked layers: one directory per chain ID, shared by every image and
// container that uses the layer. Cross-process safety comes from flock(2) on lock files: one
// per chain ID for unpacking, one for the whole store around anything that adds or removes
// references (snapshots) or layers.

import Crypto
import Glibc
import Synchronization
public import Logging
import SystemSupport

/// One unpacked layer.
public struct Layer: Sendable, Hashable {
    /// The OCI chain ID: this layer's identity together with every layer below it.
    public var chainID: String
    /// The `sha256:` digest of the layer's uncompressed tar.
    public var diffID: String
    /// The chain ID of the layer below, `nil` for a base layer.
    public var parentChainID: String?
    /// The unpacked tree, with whiteouts stored as overlay whiteouts.
    public var path: String
    /// Bytes of regular file content in the tree.
    public var size: Int64
}

/// Unpacked layers keyed by chain ID, and the snapshots (container root filesystems) made
/// from them.
///
/// ```swift
/// let store = try LayerStore(root: "/var/lib/berth/layers")
/// let diffIDs = ["sha256:…", "sha256:…"]
/// let chain = LayerStore.chainIDs(diffIDs: diffIDs)
/// for (index, diffID) in diffIDs.enumerated() {
///     _ = try await store.unpack(diffID: diffID, parentChainID: index > 0 ? chain[index - 1] : nil,
///                                from: .file(blobPath[index]), compression: .gzip)
/// }
/// let snapshot = try store.createSnapshot(topChainID: chain.last, at: "/var/lib/berth/containers/c1")
/// defer { try? snapshot.remove() }
/// ```
///
/// On disk: `<root>/<hex>/diff` is the layer's tree and `<root>/<hex>/layer` its metadata;
/// `.tmp/` holds unpacks in progress, `.locks/` the lock files, `.refs/` one file per snapshot
/// naming the layers it uses.
public final class LayerStore: Sendable {
    /// The store's directory.
    public let root: String
    let logger: Logger

    var tmpDirectory: String { root + "/.tmp" }
    var locksDirectory: String { root + "/.locks" }
    var refsDirectory: String { root + "/.refs" }
    /// An empty directory: the lower layer of a snapshot of an empty root.
    var emptyDirectory: String { root + "/.empty" }

    /// Opens (creating if needed) the store at `root`.
    ///
    /// - Parameters:
    ///   - root: The store's directory, normally `<berth root>/layers`.
    ///   - logger: Where unpacks and driver choices are logged.
    /// - Throws: ``LayerError`` when the directories cannot be created.
    public init(root: String, logger: Logger = Logger(label: "berth.layers")) throws(LayerError) {
        self.root = root
        self.logger = logger
        for directory in [root, tmpDirectory, locksDirectory, refsDirectory, emptyDirectory] {
            try LayerError.from(try makeDirectories(directory, mode: 0o700))
        }
    }

    // MARK: - Identity

    /// The OCI chain IDs of a stack of layers, bottom first.
    ///
    /// From the image spec (config.md, "Layer ChainID"): `ChainID(L₀) = DiffID(L₀)` and
    /// `ChainID(L₀…Lₙ) = sha256(ChainID(L₀…Lₙ₋₁) + " " + DiffID(Lₙ))`.
    ///
    /// - Parameter diffIDs: The layers' diff IDs (`rootfs.diff_ids` of the image config).
    /// - Returns: One chain ID per layer.
    public static func chainIDs(diffIDs: [String]) -> [String] {
        var result: [String] = []
        for diffID in diffIDs {
            guard let parent = result.last else {
                result.append(diffID)
                continue
            }
            result.append(digestString(SHA256.hash(data: Array("\(parent) \(diffID)".utf8))))
        }
        return result
    }

    /// The hex part of a `sha256:` digest, refusing anything else (it becomes a file name).
    static func hex(_ digest: String) throws(LayerError) -> String {
        let hex = digest.dropFirst("sha256:".count)
        guard digest.hasPrefix("sha256:"), hex.count == 64,
            hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else { throw LayerError(code: .invalidArgument, detail: "\"\(digest)\" is not a sha256 digest") }
        return String(hex)
    }

    // MARK: - Layers

    /// Unpacks one layer into its own directory, keyed by its chain ID.
    ///
    /// The tar is inflated on one thread and applied on another, into a temporary directory
    /// that is renamed into place only when the whole stream was applied and its SHA-256 equals
    /// `diffID`; on any failure the temporary directory is removed. A layer that already
    /// exists is returned at once (without reading `source`). Concurrent unpacks of the same
    /// chain ID, in this process or another, end with one copy: the later one waits and then
    /// returns the first one's layer. The parent need not be unpacked yet, so the layers of an
    /// image can be unpacked in parallel.
    ///
    /// Costs a full read of the blob and a write of every file in it.
    ///
    /// - Parameters:
    ///   - diffID: The `sha256:` digest of the uncompressed tar (from the image config).
    ///   - parentChainID: The chain ID of the layer below, `nil` for the base layer.
    ///   - source: The blob, on disk or as it downloads.
    ///   - compression: The blob's compression (see ``LayerCompression/init(mediaType:)``).
    /// - Returns: The unpacked layer.
    /// - Throws: ``LayerError`` with ``LayerError/Code/unsafeEntry`` for an entry that would land
    ///   outside the layer, ``LayerError/Code/invalidArchive`` for a malformed stream,
    ///   ``LayerError/Code/digestMismatch`` when the content is not `diffID`.
    public func unpack(diffID: String, parentChainID: String?, from source: LayerSource,
                       compression: LayerCompression) async throws(LayerError) -> Layer
    {
        let chainID = parentChainID.map { Self.chainIDs(diffIDs: [$0, diffID])[1] } ?? diffID
        _ = try Self.hex(diffID)
        if let parentChainID { _ = try Self.hex(parentChainID) }
        if let existing = layer(chainID: chainID) { return existing }

        let input: BlobInput
        var pump: Task<Void, Never>?
        switch source {
        case .file(let path): input = .file(path)
        case .stream(let stream):
            let channel = ChunkChannel()
            input = .channel(channel)
            pump = Task {
                for await chunk in stream { await channel.send(chunk) }
                channel.finish()
            }
        }
        defer { pump?.cancel() }
        return try await BlockingPool.shared.run { () throws(LayerError) -> Layer in
            do throws(LayerError) {
                return try self.unpackLocked(chainID: chainID, diffID: diffID, parent: parentChainID, input: input,
                                             compression: compression)
            } catch {
                if case .channel(let channel) = input { channel.cancel() }
                throw error.inLayer(diffID)
            }
        }
    }

    private func unpackLocked(chainID: String, diffID: String, parent: String?, input: BlobInput,
                              compression: LayerCompression) throws(LayerError) -> Layer
    {
        let hex = try Self.hex(chainID)
        let lock = try LayerError.from(try FileLock(locksDirectory + "/" + hex))
        defer { lock.unlock() }
        if let existing = layer(chainID: chainID) {
            if case .channel(let channel) = input { channel.cancel() }
            return existing
        }

        let temporary = tmpDirectory + "/\(hex)-\(UInt32.random(in: 0...UInt32.max))"
        do throws(LayerError) {
            try LayerError.from(try makeDirectories(temporary + "/diff", mode: 0o755))
            let clock = ContinuousClock()
            let start = clock.now
            let (actual, size) = try Unpacker.unpack(input, compression: compression, into: temporary + "/diff")
            guard actual == diffID else {
                throw LayerError(code: .digestMismatch, detail: "uncompressed content has digest \(actual)")
            }
            let metadata = [diffID, parent ?? "", String(size)].joined(separator: "\n") + "\n"
            try LayerError.from(try writeAtomically(temporary + "/layer", Array(metadata.utf8)))
            _ = try LayerError.from(try sys("move the unpacked layer into place", path: root + "/" + hex) {
                rename(temporary, root + "/" + hex)
            })
            logger.debug("unpacked layer", metadata: ["chainID": "\(chainID)", "bytes": "\(size)",
                                                      "duration": "\(clock.now - start)"])
        } catch {
            try? removeTree(temporary)
            throw error
        }
        guard let layer = layer(chainID: chainID) else {
            throw LayerError(code: .notFound, layer: chainID, detail: "unpacked layer vanished")
        }
        return layer
    }

    /// The unpacked layer with this chain ID, or `nil` if it is not in the store.
    ///
    /// - Parameter chainID: A chain ID from ``chainIDs(diffIDs:)``.
    public func layer(chainID: String) -> Layer? {
        guard let hex = try? Self.hex(chainID), let bytes = try? readWholeFile(root + "/" + hex + "/layer") else { return nil }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 3, let size = Int64(lines[2]) else { return nil }
        return Layer(chainID: chainID, diffID: lines[0], parentChainID: lines[1].isEmpty ? nil : lines[1],
                     path: root + "/" + hex + "/diff", size: size)
    }

    /// Every layer in the store.
    public func layers() -> [Layer] {
        let names = (try? storeEntries(root)) ?? []
        return names.compactMap { layer(chainID: "sha256:" + $0) }
    }

    /// The layers from `chainID` down to the base layer, top first.
    ///
    /// - Throws: ``LayerError`` with ``LayerError/Code/notFound`` when one of them is missing.
    public func chain(topChainID chainID: String) throws(LayerError) -> [Layer] {
        var result: [Layer] = []
        var next: String? = chainID
        while let id = next {
            guard let layer = layer(chainID: id) else {
                throw LayerError(code: .notFound, layer: id, detail: "layer is not unpacked")
            }
            result.append(layer)
            next = layer.parentChainID
        }
        return result
    }

    /// Removes one layer.
    ///
    /// - Parameter chainID: The layer to remove.
    /// - Throws: ``LayerError`` with ``LayerError/Code/inUse`` while a snapshot uses it or a
    ///   layer above it is in the store, ``LayerError/Code/notFound`` when it does not exist.
    public func remove(chainID: String) throws(LayerError) {
        let hex = try Self.hex(chainID)
        let lock = try LayerError.from(try FileLock(locksDirectory + "/store"))
        defer { lock.unlock() }
        guard layer(chainID: chainID) != nil else {
            throw LayerError(code: .notFound, layer: chainID, detail: "layer is not in the store")
        }
        if let user = try snapshotReferences().first(where: { $0.chainIDs.contains(chainID) }) {
            throw LayerError(code: .inUse, layer: chainID, detail: "layer is used by the snapshot at \(user.directory)")
        }
        if let child = layers().first(where: { $0.parentChainID == chainID }) {
            throw LayerError(code: .inUse, layer: chainID, detail: "layer is the parent of \(child.chainID)")
        }
        try discard(hex)
    }

    /// Removes every layer that is not kept: not in `chainIDs`, not below one of them, and not
    /// used by a snapshot. Also removes unpacks that a crashed process left behind.
    ///
    /// - Parameter chainIDs: The tops of the chains to keep (the images still wanted).
    /// - Returns: The chain IDs removed.
    /// - Throws: ``LayerError`` when a removal fails.
    public func collectGarbage(keeping chainIDs: Set<String>) throws(LayerError) -> [String] {
        let lock = try LayerError.from(try FileLock(locksDirectory + "/store"))
        defer { lock.unlock() }
        let all = layers()
        let byID = Dictionary(all.map { ($0.chainID, $0) }, uniquingKeysWith: { first, _ in first })
        var kept: Set<String> = []
        var pending = Array(chainIDs) + (try snapshotReferences().flatMap(\.chainIDs))
        while let id = pending.popLast() {
            guard kept.insert(id).inserted else { continue }
            if let parent = byID[id]?.parentChainID { pending.append(parent) }
        }
        var removed: [String] = []
        for layer in all where !kept.contains(layer.chainID) {
            try discard(try Self.hex(layer.chainID))
            removed.append(layer.chainID)
        }
        // A temporary unpack whose chain lock is free belongs to a process that died.
        for name in try storeEntries(tmpDirectory) {
            let hex = String(name.prefix(64))
            guard let lock = try LayerError.from(try FileLock.attempt(locksDirectory + "/" + hex)) else { continue }
            try LayerError.from(try removeTree(tmpDirectory + "/" + name))
            lock.unlock()
        }
        return removed.sorted()
    }

    /// Makes a layer disappear at once (rename), then deletes its files.
    private func discard(_ hex: String) throws(LayerError) {
        let doomed = tmpDirectory + "/\(hex)-removed-\(UInt32.random(in: 0...UInt32.max))"
        _ = try LayerError.from(try sys("remove layer", path: root + "/" + hex) { rename(root + "/" + hex, doomed) })
        try LayerError.from(try removeTree(doomed))
    }

    /// Names in a store directory that are layer hex IDs (or temporary unpacks of them).
    private func storeEntries(_ directory: String) throws(LayerError) -> [String] {
        try LayerError.from(try directoryEntries(atPath: directory)).map(\.name).filter { name in
            name.utf8.count >= 64 && name.utf8.prefix(64).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
        }
    }
}
