import Glibc
import Layers
import Testing
import TestSupport

/// What must happen to a hostile archive.
enum HostileOutcome: Sendable {
    /// Refused with this code; the layer does not exist afterwards.
    case refused(LayerError.Code)
    /// Unpacked, with this path (relative to the layer) created inside the layer.
    case contained(String)
}

/// One hostile archive. `host` is the absolute path of a directory on the host that the
/// archive tries to write into; it holds one file, `victim`, that must survive unchanged.
struct HostileCase: Sendable, CustomStringConvertible {
    var description: String
    var entries: @Sendable (_ host: String) -> [TarEntry]
    var outcome: HostileOutcome
}

/// Enough `../` to climb from any test directory to `/`.
let climb = String(repeating: "../", count: 24)

let hostileCases: [HostileCase] = [
    HostileCase(description: "dot-dot above the root", entries: { host in
        [.file(climb + String(host.dropFirst()) + "/pwned", "x")]
    }, outcome: .refused(.unsafeEntry)),
    HostileCase(description: "dot-dot after a directory", entries: { _ in
        [.directory("a"), .file("a/../../pwned", "x")]
    }, outcome: .refused(.unsafeEntry)),
    HostileCase(description: "absolute path lands inside the root", entries: { host in
        [.file(host + "/pwned", "x")]
    }, outcome: .contained(".")),
    HostileCase(description: "write through an absolute symlink to the host directory", entries: { host in
        [.symlink("link", to: host), .file("link/pwned", "x")]
    }, outcome: .refused(.io)),
    HostileCase(description: "write through a climbing symlink stays in the root", entries: { _ in
        [.symlink("up", to: climb), .file("up/escaped", "x")]
    }, outcome: .contained("escaped")),
    HostileCase(description: "write through a symlink to the root", entries: { _ in
        [.symlink("root", to: "/"), .directory("root/etc"), .file("root/etc/passwd", "x")]
    }, outcome: .contained("etc/passwd")),
    HostileCase(description: "chained dot-dot symlinks", entries: { _ in
        [.symlink("a", to: ".."), .symlink("b", to: "a/../a/.."), .file("b/a/b/deep", "x")]
    }, outcome: .contained("deep")),
    HostileCase(description: "hard link climbing out of the layer", entries: { _ in
        [.hardlink("hl", to: climb + "etc/passwd")]
    }, outcome: .refused(.unsafeEntry)),
    HostileCase(description: "hard link to a host path that is not in the layer", entries: { host in
        [.hardlink("hl", to: host + "/victim")]
    }, outcome: .refused(.notFound)),
    HostileCase(description: "hard link through a symlink to the host directory", entries: { host in
        [.symlink("link", to: host), .hardlink("hl", to: "link/victim")]
    }, outcome: .refused(.notFound)),
    HostileCase(description: "hard link to a symlink links the symlink itself", entries: { host in
        [.symlink("s", to: host + "/victim"), .hardlink("h", to: "s")]
    }, outcome: .contained("h")),
    HostileCase(description: "a file replaces a symlink instead of writing through it", entries: { host in
        [.symlink("s", to: host + "/victim"), .file("s", "replaced")]
    }, outcome: .contained("s")),
    HostileCase(description: "whiteout through a symlink to the host directory", entries: { host in
        [.symlink("d", to: host), .whiteout("d/victim")]
    }, outcome: .refused(.io)),
    HostileCase(description: "opaque marker through a symlink marks the root", entries: { _ in
        [.symlink("d", to: "/"), .opaque("d")]
    }, outcome: .contained("d")),
    HostileCase(description: "whiteout named dot-dot is ignored", entries: { _ in
        [.file("keep", "x"), TarEntry(".wh..", .file([]), mode: 0)]
    }, outcome: .contained("keep")),
    HostileCase(description: "overlay xattrs from the archive are dropped", entries: { _ in
        [TarEntry("dir", .directory, xattrs: ["trusted.overlay.redirect": Array("/etc".utf8)])]
    }, outcome: .contained("dir")),
]

@Suite(.serialized)
struct SecureUnpackTests {
    @Test(arguments: hostileCases)
    func hostileArchiveIsContainedOrRefused(_ hostile: HostileCase) async throws {
        let test = try TestStore()
        let host = try TemporaryDirectory(prefix: "host")
        defer {
            try? test.remove()
            try? host.remove()
        }
        try writeBytes(Array("original".utf8), to: host.path + "/victim")
        let entries = hostile.entries(host.path)
        let diffID = TarFixture.sha256(TarFixture.archive(entries))

        switch hostile.outcome {
        case .refused(let code):
            await #expect(throws: LayerError.self) { _ = try await test.unpack(entries) }
            do {
                _ = try await test.unpack(entries)
            } catch let error as LayerError {
                #expect(error.code == code, "\(error)")
                #expect(error.description.hasPrefix("layer \(diffID): "), "\(error)")
                #expect(error.entry != nil, "\(error)")
            }
            #expect(test.store.layer(chainID: diffID) == nil)
            #expect(captureTree(test.store.root + "/.tmp").isEmpty, "half-written layer left behind")
        case .contained(let path):
            let layer = try await test.unpack(entries)
            #expect(exists(layer.path + "/" + path))
            if hostile.description.hasPrefix("overlay xattrs") {
                #expect(listXattrs(layer.path + "/dir")["trusted.overlay.redirect"] == nil)
            }
        }
        #expect(captureTree(host.path).keys.sorted() == ["victim"])
        #expect(readAll(host.path + "/victim") == Array("original".utf8))
        #expect(!exists("/pwned") && !exists("/escaped") && !exists("/deep"))
    }

    @Test func absolutePathsAndDotDotInsideTheRootAreCleaned() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let layer = try await test.unpack([
            .directory("/abs"), .file("/abs/file", "a"), .file("./rel/../rel2/./f", "b"), .file("a//b///c", "c"),
        ])
        #expect(captureTree(layer.path).keys.sorted() == ["a", "a/b", "a/b/c", "abs", "abs/file", "rel2", "rel2/f"])
    }

    @Test func aLaterEntryReplacesAnEarlierOneBelowTheRoot() async throws {
        let test = try TestStore()
        defer { try? test.remove() }
        let layer = try await test.unpack([
            .directory("d"), .file("d/f", "first"), .file("d/f", "second"), .symlink("d/s", to: "f"), .file("d/s", "file"),
        ])
        #expect(readAll(layer.path + "/d/f") == Array("second".utf8))
        #expect(readAll(layer.path + "/d/s") == Array("file".utf8))
    }
}
