import Foundation
import Images
import Testing
import TestSupport

/// save/load in both archive formats, checked with skopeo and the OCI layout checker.
@Suite(.serialized)
struct ArchiveTests {
    /// A store holding the four-layer fixture image under `reference`, imported from a layout.
    static func storeWithFixture(_ scratch: TemporaryDirectory, reference: String) async throws -> (ImageStore, Image) {
        try ImageFixtures.writeLayout([try ImageFixtures.busyboxImage(dataSize: 64 << 10)], at: scratch.path + "/layout", refName: reference)
        let store = try ImageStore(root: scratch.path + "/source")
        let images = try await store.importLayout(at: scratch.path + "/layout")
        return (store, try #require(images.first))
    }

    @Test(arguments: ArchiveFormat.allCases)
    func saveThenLoadGivesTheSameImageID(format: ArchiveFormat) async throws {
        let scratch = try TemporaryDirectory(prefix: "archive")
        let reference = "127.0.0.1:5000/test/busybox:v1"
        let (store, image) = try await Self.storeWithFixture(scratch, reference: reference)
        let archive = scratch.path + "/image.tar"
        try await store.save([reference], to: archive, format: format)

        let inspect = try run(["skopeo", "inspect", "\(format.rawValue):\(archive)"])
        #expect(inspect.status == 0, "\(inspect.output)")
        if format == .ociArchive {
            let extracted = scratch.path + "/extracted"
            try FileManager.default.createDirectory(atPath: extracted, withIntermediateDirectories: true)
            #expect(try run(["tar", "-xf", archive, "-C", extracted]).status == 0)
            let check = try layoutCheck(extracted)
            #expect(check.ok, "\(check.output)")
        }

        let target = try ImageStore(root: scratch.path + "/target")
        let loaded = try await target.load(from: archive)
        #expect(loaded.map(\.id) == [image.id])
        #expect(loaded.first?.reference?.description == reference)
        if format == .ociArchive { #expect(loaded.first?.digest == image.digest) }
        let found = try target.image(reference)
        #expect(found.id == image.id && found.diffIDs == image.diffIDs)
        try scratch.remove()
    }

    @Test func aDockerArchiveWrittenBySkopeoLoads() async throws {
        let scratch = try TemporaryDirectory(prefix: "archive")
        let (_, image) = try await Self.storeWithFixture(scratch, reference: "127.0.0.1:5000/test/busybox:v1")
        let archive = scratch.path + "/skopeo.tar"
        let copy = try run([
            "skopeo", "copy", "oci:\(scratch.path)/layout:127.0.0.1:5000/test/busybox:v1", "docker-archive:\(archive):berth/fromskopeo:v2",
        ])
        #expect(copy.status == 0, "\(copy.output)")
        let store = try ImageStore(root: scratch.path + "/target")
        let loaded = try await store.load(from: archive)
        #expect(loaded.map(\.id) == [image.id])
        #expect(try store.image("berth/fromskopeo:v2").layers.count == 4)
        try scratch.remove()
    }

    @Test(arguments: ["../escape", "/etc/escape", "a/../../escape"])
    func archiveEntriesOutsideTheArchiveAreRefused(name: String) async throws {
        let scratch = try TemporaryDirectory(prefix: "archive")
        let archive = scratch.path + "/hostile.tar"
        try Data(TarFixture.archive([.file(name, "x")])).write(to: URL(fileURLWithPath: archive))
        let store = try ImageStore(root: scratch.path + "/store")
        await #expect {
            try await store.load(from: archive)
        } throws: { error in
            (error as? ImageError)?.code == .invalidContent && "\(error)".contains("outside")
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/escape"))
        #expect(!FileManager.default.fileExists(atPath: store.content.root + "/.berth/escape"))
        #expect(FileManager.default.subpaths(atPath: store.content.root + "/.berth")?.contains { $0.hasPrefix("load-") } == false)
        try scratch.remove()
    }
}
