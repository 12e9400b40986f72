import Containers
import Foundation
import Testing
import TestSupport

/// libarchive is loaded the first time Berth reads or writes a tar (CArchive), not when a program
/// starts. Hidden from the `berth` CLI by a bind mount over the library in a private mount
/// namespace: running a container from an unpacked image still works, and what needs a tar fails
/// naming the library, with nothing written.
@Suite(.serialized)
struct LibArchiveTests {
    /// The wrapper that runs a command with libarchive.so.13 replaced by an empty file.
    static func withoutLibArchive() throws -> [String] {
        let library = try #require(
            ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
                .map { $0 + "/libarchive.so.13" }
                .first { FileManager.default.fileExists(atPath: $0) },
            "libarchive.so.13 not found")
        return ["/usr/bin/unshare", "--mount", "--propagation", "private",
                "/bin/sh", "-c", "mount --bind /dev/null \"$0\" && exec \"$@\"", library]
    }

    @Test func aContainerRunsWithoutLibArchive() async throws {
        // The image's layers are unpacked by a run that has libarchive.
        #expect(try await CLITests().berth(["run", "--rm", "busybox", "true"]).status == 0)
        let outcome = try await CLITests().berth(
            ["run", "--rm", "busybox", "echo", "started"], wrapper: try Self.withoutLibArchive())
        #expect(outcome.status == 0, "\(outcome.error)")
        #expect(outcome.output == "started\n")
    }

    @Test func aTarWithoutLibArchiveNamesItAndWritesNothing() async throws {
        let runtime = try await TestRuntime.shared()
        _ = try await CLITests().berth(["ps"])
        let source = FileManager.default.temporaryDirectory.appendingPathComponent("no-libarchive-\(getpid())").path
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: source) }
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: source + "/hello"))
        let before = LeakSnapshot.take(stateDirectories: [runtime.root])
        let name = "no-libarchive:\(getpid())"
        let outcome = try await CLITests().berth(["import", source, name], wrapper: try Self.withoutLibArchive())
        #expect(outcome.status != 0)
        #expect(outcome.error.contains("libarchive.so.13 could not be loaded"), "\(outcome.error)")
        #expect(try await CLITests().berth(["image", "inspect", name]).status != 0)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }
}
