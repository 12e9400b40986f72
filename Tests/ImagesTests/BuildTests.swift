import Foundation
import Images
import Layers
import Testing
import TestSupport

/// commit, import, unpack into a layer store, and the locally built busybox image.
@Suite(.serialized)
struct BuildTests {
    @Test func theBusyboxImageIsBuiltLocallyReproduciblyAndUnpacks() async throws {
        let scratch = try TemporaryDirectory(prefix: "build")
        let store = try ImageStore(root: scratch.path + "/one")
        let image = try await store.makeBusyboxImage()
        #expect(image.reference?.description == "docker.io/library/busybox:latest")
        #expect(image.layers.count == 1 && image.config.config?.cmd == ["sh"])
        #expect(try store.image("busybox").id == image.id)
        let check = try layoutCheck(store.content.root)
        #expect(check.ok, "\(check.output)")
        #expect(try run(["skopeo", "inspect", "oci:\(store.content.root):docker.io/library/busybox:latest"]).status == 0)

        let again = try await ImageStore(root: scratch.path + "/two").makeBusyboxImage()
        #expect(again.id == image.id && again.digest == image.digest)

        let layers = try LayerStore(root: scratch.path + "/layers")
        let top = try #require(try await store.unpack(image, into: layers))
        let tree = try #require(layers.layer(chainID: top)).path
        #expect(FileManager.default.isExecutableFile(atPath: tree + "/bin/busybox"))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: tree + "/bin/sh") == "busybox")
        // A second unpack finds the layer and does nothing.
        #expect(try await store.unpack(image, into: layers) == top)
        try scratch.remove()
    }

    @Test func commitPutsASnapshotsChangesOnTopOfTheBase() async throws {
        let scratch = try TemporaryDirectory(prefix: "build")
        let (store, base) = try await ArchiveTests.storeWithFixture(scratch, reference: "127.0.0.1:5000/test/busybox:v1")
        let layers = try LayerStore(root: scratch.path + "/layers")
        let top = try await store.unpack(base, into: layers)
        #expect(top == LayerStore.chainIDs(diffIDs: base.diffIDs.map(\.description)).last)
        let snapshot = try layers.createSnapshot(topChainID: top, at: scratch.path + "/container", driver: .copy)
        try Data("new\n".utf8).write(to: URL(fileURLWithPath: snapshot.rootfs + "/etc/new"))
        try FileManager.default.removeItem(atPath: snapshot.rootfs + "/etc/motd")
        let path = scratch.path + "/diff.tar.gz"
        let layer = LayerBlob(path: path, diff: try snapshot.writeDiff(toFile: path, compression: .gzip))
        try snapshot.remove()

        let reference = try ImageReference(parsing: "127.0.0.1:5000/test/committed:v2")
        let image = try await store.commit(
            base.reference?.description, layer: layer, as: reference,
            history: ImageConfig.History(createdBy: "edit /etc"), change: { $0.config?.cmd = ["/bin/ls"] })
        #expect(image.layers.count == 5 && image.layers.prefix(4).map(\.digest) == base.layers.map(\.digest))
        #expect(image.diffIDs.last?.description == layer.diff.diffID)
        #expect(image.config.history?.last?.createdBy == "edit /etc")
        #expect(try store.image(reference.description).config.config?.cmd == ["/bin/ls"])
        let check = try layoutCheck(store.content.root)
        #expect(check.ok, "\(check.output)")

        let newTop = try #require(try await store.unpack(image, into: layers))
        let tree = try #require(layers.layer(chainID: newTop)).path
        #expect(FileManager.default.fileExists(atPath: tree + "/etc/new"))
        let again = try layers.createSnapshot(topChainID: newTop, at: scratch.path + "/again", driver: .copy)
        #expect(!FileManager.default.fileExists(atPath: again.rootfs + "/etc/motd"))
        #expect(FileManager.default.fileExists(atPath: again.rootfs + "/etc/new"))
        try again.remove()
        try scratch.remove()
    }

    @Test func importMakesAOneLayerImageFromADirectoryOrAPlainTar() async throws {
        let scratch = try TemporaryDirectory(prefix: "build")
        let store = try ImageStore(root: scratch.path + "/store")
        try FileManager.default.createDirectory(atPath: scratch.path + "/tree/etc", withIntermediateDirectories: true)
        try Data("hi\n".utf8).write(to: URL(fileURLWithPath: scratch.path + "/tree/etc/hello"))
        let fromDirectory = try await store.importFilesystem(scratch.path + "/tree", as: try ImageReference(parsing: "imported/dir:1"))
        #expect(fromDirectory.layers.map(\.mediaType) == [.ociLayerGzip])

        let tar = TarFixture.archive([.directory("etc"), .file("etc/hello", "hi\n")])
        try Data(tar).write(to: URL(fileURLWithPath: scratch.path + "/fs.tar"))
        let fromTar = try await store.importFilesystem(
            scratch.path + "/fs.tar", as: nil, config: RuntimeConfig(cmd: ["/bin/sh"]))
        #expect(fromTar.layers.first?.digest == fromTar.diffIDs.first)
        #expect(fromTar.reference == nil && fromTar.config.config?.cmd == ["/bin/sh"])
        #expect(try store.images().contains { $0.id == fromTar.id })
        #expect(try layoutCheck(store.content.root).ok)

        #expect(try run(["gzip", "-k", scratch.path + "/fs.tar"]).status == 0)
        await #expect {
            try await store.importFilesystem(scratch.path + "/fs.tar.gz", as: nil)
        } throws: { error in
            (error as? ImageError)?.code == .unsupported
        }
        try scratch.remove()
    }
}
