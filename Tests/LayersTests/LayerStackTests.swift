import Glibc
import Layers
import Testing
import TestSupport

/// A three-layer image exercising every entry type, whiteouts and an opaque directory.
let stackLayers: [[TarEntry]] = [
    [
        .directory("etc"), .file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        .file("etc/shadow", "secret", mode: 0o640, uid: 0, gid: 42),
        .directory("bin"), .file("bin/tool", "#!/bin/sh\n", mode: 0o4755),
        .hardlink("bin/tool-link", to: "bin/tool"),
        .symlink("bin/sh", to: "/bin/tool"),
        TarEntry("bin/ping", .file(Array("ping".utf8)), mode: 0o755,
                 // security.capability v2: cap_net_raw permitted+effective (as setcap writes it).
                 xattrs: ["security.capability": [0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]),
        .directory("dev"), TarEntry("dev/null", .characterDevice(major: 1, minor: 3), mode: 0o666),
        TarEntry("dev/loop9", .blockDevice(major: 7, minor: 9), mode: 0o660, gid: 6),
        TarEntry("run", .directory, mode: 0o755), TarEntry("run/fifo", .fifo, mode: 0o600),
        .directory("data", uid: 1000, gid: 1000), .file("data/old1", "1"), .file("data/old2", "2"),
        .directory("data/sub"), .file("data/sub/deep", "d"),
        .directory("var"), .directory("var/cache"), .file("var/cache/big", "cache"),
        TarEntry("tmp", .directory, mode: 0o1777),
        TarEntry("home", .directory, xattrs: ["user.comment": Array("base".utf8)]),
    ],
    [
        .whiteout("var/cache"),
        .directory("data", uid: 1000, gid: 1000), .opaque("data"), .file("data/new", "n", uid: 1000, gid: 1000),
        .file("etc/passwd", "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"),
        .directory("home/user", uid: 1000, gid: 1000),
    ],
    [
        .whiteout("etc/shadow"), .whiteout("run"), .directory("home/user", uid: 1000, gid: 1000),
        .symlink("var/cache", to: "../tmp"),
        .file("home/user/.profile", "export A=1\n", mode: 0o600, uid: 1000, gid: 1000),
    ],
]

/// The tree `stackLayers` define, by the image spec's rules, for comparison.
let stackExpected: [String: Node] = {
    func node(_ type: String, _ mode: UInt32, _ data: String = "", uid: UInt32 = 0, gid: UInt32 = 0,
              xattrs: [String: [UInt8]] = [:]) -> Node
    {
        Node(type: type, mode: mode, uid: uid, gid: gid, data: data, xattrs: xattrs)
    }
    return [
        "etc": node("dir", 0o755),
        "etc/passwd": node("file", 0o644, "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"),
        "bin": node("dir", 0o755),
        "bin/tool": node("file", 0o4755, "#!/bin/sh\n"),
        "bin/tool-link": node("file", 0o4755, "#!/bin/sh\n"),
        "bin/sh": node("symlink", 0, "/bin/tool"),
        "bin/ping": node("file", 0o755, "ping", xattrs: [
            "security.capability": [0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ]),
        "dev": node("dir", 0o755), "dev/null": node("char", 0o666, "1,3"), "dev/loop9": node("block", 0o660, "7,9", gid: 6),
        "data": node("dir", 0o755, uid: 1000, gid: 1000), "data/new": node("file", 0o644, "n", uid: 1000, gid: 1000),
        "var": node("dir", 0o755), "var/cache": node("symlink", 0, "../tmp"),
        "tmp": node("dir", 0o1777),
        // Layer 2 does not list `home`, so the applier makes it (0755 root, as tar and Docker's
        // applier do), and the topmost layer's directory decides the merged metadata, as in
        // overlay: layer 1's xattr is gone.
        "home": node("dir", 0o755),
        "home/user": node("dir", 0o755, uid: 1000, gid: 1000),
        "home/user/.profile": node("file", 0o600, "export A=1\n", uid: 1000, gid: 1000),
    ]
}()

@Suite(.serialized)
struct LayerStackTests {
    /// Unpacks `stackLayers` in parallel, as an image pull would.
    func unpackStack(_ test: TestStore, compressor: String? = nil) async throws -> [Layer] {
        let diffIDs = stackLayers.map { TarFixture.sha256(TarFixture.archive($0)) }
        let chain = LayerStore.chainIDs(diffIDs: diffIDs)
        return try await withThrowingTaskGroup(of: (Int, Layer).self) { group in
            for (index, entries) in stackLayers.enumerated() {
                group.addTask {
                    (index, try await test.unpack(entries, parent: index > 0 ? chain[index - 1] : nil,
                                                  compressor: compressor))
                }
            }
            var layers: [Int: Layer] = [:]
            for try await (index, layer) in group { layers[index] = layer }
            return (0..<stackLayers.count).compactMap { layers[$0] }
        }
    }

    @Test(arguments: [SnapshotDriver.overlay, .copy], [nil, "gzip", "zstd"])
    func stackedLayersGiveTheTreeTheSpecDefines(_ driver: SnapshotDriver, _ compressor: String?) async throws {
        let before = LeakSnapshot.take()
        let test = try TestStore()
        let layers = try await unpackStack(test, compressor: compressor)
        #expect(layers.map(\.chainID) == LayerStore.chainIDs(diffIDs: layers.map(\.diffID)))
        let snapshot = try test.store.createSnapshot(topChainID: layers.last?.chainID,
                                                     at: test.directory.path + "/c1", driver: driver)
        #expect(snapshot.driver == driver)
        let tree = captureTree(snapshot.rootfs)
        for path in Set(tree.keys).union(stackExpected.keys).sorted() {
            #expect(tree[path] == stackExpected[path], "\(path)")
        }
        var a = stat(), b = stat()
        _ = lstat(snapshot.rootfs + "/bin/tool", &a)
        _ = lstat(snapshot.rootfs + "/bin/tool-link", &b)
        #expect(a.st_ino == b.st_ino, "hard link kept")
        var file = stat()
        _ = lstat(snapshot.rootfs + "/etc/passwd", &file)
        #expect(file.st_mtim.tv_sec == 1_700_000_000)
        try snapshot.remove()
        try snapshot.remove()  // idempotent
        #expect(!exists(snapshot.directory))
        try test.remove()
        #expect(await LeakSnapshot.expectClean(since: before).isEmpty)
    }

    @Test func layerDirectoriesHoldOverlayWhiteouts() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let layers = try await unpackStack(test)
        let second = captureTree(layers[1].path)
        #expect(second["var/cache"]?.type == "char" && second["var/cache"]?.data == "0,0")
        #expect(listXattrs(layers[1].path + "/data")["trusted.overlay.opaque"] == Array("y".utf8))
        #expect(second["data/new"] != nil)
    }

    @Test func sparseFilesKeepTheirHoles() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let source = test.directory.path + "/src"
        try run(["mkdir", source])
        try run(["truncate", "-s", "64M", source + "/sparse"])
        try run(["sh", "-c", "printf end >> \(source)/sparse"])
        try run(["tar", "--sparse", "--format=pax", "-C", source, "-cf", test.blobs + "/sparse.tar", "sparse"])
        let diffID = TarFixture.sha256(readAll(test.blobs + "/sparse.tar"))
        let layer = try await test.store.unpack(diffID: diffID, parentChainID: nil,
                                                from: .file(test.blobs + "/sparse.tar"), compression: .none)
        var st = stat()
        _ = lstat(layer.path + "/sparse", &st)
        #expect(st.st_size == 64 * 1024 * 1024 + 3)
        #expect(st.st_blocks * 512 < 1024 * 1024, "holes were written out")
    }

    @Test func streamedBlobIsUnpackedWhileItArrives() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let path = test.blobs + "/layer.tar.gz"
        let diffID = try TarFixture.write(stackLayers[0], to: path, compressor: "gzip")
        let bytes = readAll(path)
        let stream = AsyncStream<[UInt8]> { continuation in
            for start in stride(from: 0, to: bytes.count, by: 100) {
                continuation.yield(Array(bytes[start..<min(start + 100, bytes.count)]))
            }
            continuation.finish()
        }
        let layer = try await test.store.unpack(diffID: diffID, parentChainID: nil, from: .stream(stream),
                                                compression: .gzip)
        #expect(captureTree(layer.path)["etc/passwd"]?.data == "root:x:0:0::/root:/bin/sh\n")
    }

    @Test func wrongDigestOrCompressionIsRefusedAndLeavesNothing() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let path = test.blobs + "/layer.tar"
        let diffID = try TarFixture.write(stackLayers[0], to: path)
        let wrong = "sha256:" + String(repeating: "0", count: 64)
        await #expect(throws: LayerError.self) {
            _ = try await test.store.unpack(diffID: wrong, parentChainID: nil, from: .file(path), compression: .none)
        }
        do {
            _ = try await test.store.unpack(diffID: wrong, parentChainID: nil, from: .file(path), compression: .none)
        } catch { #expect(error.code == .digestMismatch, "\(error)") }
        do {
            _ = try await test.store.unpack(diffID: diffID, parentChainID: nil, from: .file(path), compression: .gzip)
            Issue.record("a plain tar was accepted as gzip")
        } catch { #expect(error.code == .invalidArchive, "\(error)") }
        #expect(test.store.layers().isEmpty)
        #expect(captureTree(test.store.root + "/.tmp").isEmpty)
    }

    @Test func concurrentUnpacksOfOneLayerEndWithOneCopy() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let path = test.blobs + "/layer.tar"
        let diffID = try TarFixture.write(stackLayers[0], to: path)
        let results = try await withThrowingTaskGroup(of: Layer.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    try await test.store.unpack(diffID: diffID, parentChainID: nil, from: .file(path), compression: .none)
                }
            }
            return try await group.reduce(into: [Layer]()) { $0.append($1) }
        }
        #expect(Set(results).count == 1)
        #expect(test.store.layers().count == 1)
    }

    @Test func mediaTypesAndMagicBytesGiveTheCompression() {
        #expect(LayerCompression(mediaType: "application/vnd.oci.image.layer.v1.tar+gzip") == .gzip)
        #expect(LayerCompression(mediaType: "application/vnd.oci.image.layer.v1.tar+zstd") == .zstd)
        #expect(LayerCompression(mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip") == .gzip)
        #expect(LayerCompression(mediaType: "application/vnd.oci.image.layer.v1.tar") == LayerCompression.none)
        #expect(LayerCompression(mediaType: "application/vnd.oci.image.config.v1+json") == nil)
        #expect(LayerCompression(detectingFrom: [0x1f, 0x8b, 8, 0]) == .gzip)
        #expect(LayerCompression(detectingFrom: [0x28, 0xb5, 0x2f, 0xfd]) == .zstd)
        #expect(LayerCompression(detectingFrom: Array("etc/".utf8)) == LayerCompression.none)
    }

    @Test func chainIDsFollowTheImageSpec() {
        let a = "sha256:" + String(repeating: "a", count: 64)
        let b = "sha256:" + String(repeating: "b", count: 64)
        let chain = LayerStore.chainIDs(diffIDs: [a, b])
        #expect(chain[0] == a)
        #expect(chain[1] == TarFixture.sha256(Array("\(a) \(b)".utf8)))
    }
}
