import Glibc
import Layers
import SystemPackage
import Testing
import TestSupport

@Suite(.serialized)
struct SnapshotDiffTests {
    /// Unpacks `stackLayers` one after another and returns the top chain ID.
    func unpackStack(_ test: TestStore) async throws -> String {
        var parent: String?
        for entries in stackLayers { parent = try await test.unpack(entries, parent: parent).chainID }
        return try #require(parent)
    }

    /// What a container does: deletes a lower file, replaces a lower directory, adds and edits.
    func mutate(_ rootfs: String) throws {
        try run(["rm", rootfs + "/etc/passwd"])
        try run(["rm", "-rf", rootfs + "/data"])
        try run(["mkdir", rootfs + "/data"])
        try run(["sh", "-c", "echo fresh > \(rootfs)/data/fresh && echo new > \(rootfs)/new && echo more >> \(rootfs)/bin/ping"])
    }

    @Test(arguments: [SnapshotDriver.overlay, .copy])
    func diffListsChangesAndItsTarReproducesTheTree(_ driver: SnapshotDriver) async throws {
        let before = LeakSnapshot.take()
        let test = try TestStore()
        let top = try await unpackStack(test)
        let snapshot = try test.store.createSnapshot(topChainID: top, at: test.directory.path + "/c1", driver: driver)
        try mutate(snapshot.rootfs)

        let changes = try snapshot.changes().map(\.description)
        #expect(changes.contains("D /etc/passwd"))
        #expect(changes.contains("C /etc"))
        #expect(changes.contains("C /data"))
        #expect(changes.contains("D /data/new"))
        #expect(changes.contains("A /data/fresh"))
        #expect(changes.contains("A /new"))
        #expect(changes.contains("C /bin/ping"))
        #expect(!changes.contains { $0.hasSuffix("/var") || $0.hasSuffix("/tmp") }, "\(changes)")

        let blob = test.blobs + "/diff.tar.gz"
        let result = try snapshot.writeDiff(toFile: blob, compression: .gzip)
        #expect(result.digest == TarFixture.sha256(readAll(blob)))
        #expect(result.size == Int64(readAll(blob).count))
        let listing = try run(["tar", "-tzf", blob]).split(separator: "\n").map(String.init)
        #expect(listing.contains("etc/.wh.passwd"), "\(listing)")
        if driver == .overlay {
            #expect(listing.contains("data/.wh..wh..opq"), "\(listing)")
        } else {
            #expect(listing.contains("data/.wh.new"), "\(listing)")
        }
        let plain = try run(["sh", "-c", "gzip -dc \(blob) | sha256sum"])
        #expect("sha256:" + plain.prefix(64) == result.diffID)

        // The committed layer on top of the same layers gives the container's tree.
        let layer = try await test.store.unpack(diffID: result.diffID, parentChainID: top, from: .file(blob),
                                                compression: .gzip)
        let again = try test.store.createSnapshot(topChainID: layer.chainID, at: test.directory.path + "/c2")
        let expected = captureTree(snapshot.rootfs)
        let actual = captureTree(again.rootfs)
        for path in Set(expected.keys).union(actual.keys).sorted() {
            #expect(actual[path] == expected[path], "\(path)")
        }
        try again.remove()
        try snapshot.remove()
        try test.remove()
        #expect(await LeakSnapshot.expectClean(since: before).isEmpty)
    }

    @Test func hundredSnapshotsCreatedAndRemovedLeaveNothing() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let top = try await unpackStack(test)
        let before = LeakSnapshot.take()
        for index in 0..<100 {
            let snapshot = try test.store.createSnapshot(topChainID: top, at: test.directory.path + "/containers/\(index)")
            #expect(snapshot.driver == .overlay)
            try snapshot.remove()
        }
        #expect(await LeakSnapshot.expectClean(since: before).isEmpty)
        #expect(captureTree(test.directory.path + "/containers").isEmpty)
        #expect(captureTree(test.store.root + "/.refs").isEmpty)
    }

    @Test func layersInUseAreKeptAndUnusedOnesCollected() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let top = try await unpackStack(test)
        let base = try #require(test.store.chain(topChainID: top).last?.chainID)
        let snapshot = try test.store.createSnapshot(topChainID: top, at: test.directory.path + "/c1")
        #expect(throws: LayerError.self) { try test.store.remove(chainID: top) }
        #expect(throws: LayerError.self) { try test.store.remove(chainID: base) }
        #expect(try test.store.collectGarbage(keeping: []).isEmpty)
        #expect(test.store.snapshot(at: snapshot.directory)?.layers.first?.chainID == top)
        try snapshot.remove()
        #expect(try test.store.collectGarbage(keeping: []).count == 3)
        #expect(test.store.layers().isEmpty)
    }

    @Test func emptySnapshotIsAWritableEmptyRoot() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let snapshot = try test.store.createSnapshot(topChainID: nil, at: test.directory.path + "/c1")
        #expect(captureTree(snapshot.rootfs).isEmpty)
        try writeBytes(Array("x".utf8), to: snapshot.rootfs + "/file")
        #expect(try snapshot.changes().map(\.description) == ["A /file"])
        try snapshot.remove()
    }

    @Test func exportWritesTheWholeTree() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let top = try await unpackStack(test)
        let snapshot = try test.store.createSnapshot(topChainID: top, at: test.directory.path + "/c1")
        defer { try? snapshot.remove() }
        let path = test.blobs + "/export.tar"
        let fd = try FileDescriptor.open(path, .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
        let result = try exportFilesystem(of: snapshot.rootfs, to: fd)
        try fd.close()
        #expect(result.diffID == TarFixture.sha256(readAll(path)))
        let listing = Set(try run(["tar", "-tf", path]).split(separator: "\n").map { String($0).trimmingSuffix("/") })
        #expect(listing == Set(captureTree(snapshot.rootfs).keys))
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
