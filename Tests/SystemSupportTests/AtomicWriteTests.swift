// The one atomic write: readers see the old file or the new one, and a failure leaves neither a
// torn file nor a temporary one behind.

import Glibc
@testable import SystemSupport
import Testing
import TestSupport

@Suite(.serialized)
struct AtomicWriteTests {
    private func names(_ directory: String) -> [String] {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(fd) }
        return ((try? directoryEntries(fd, path: directory)) ?? []).map(\.name).sorted()
    }

    private func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = Glibc.read(fd, &buffer, buffer.count)
        return n < 0 ? nil : String(decoding: buffer[..<n], as: UTF8.self)
    }

    @Test(arguments: [true, false])
    func replacesTheFileWhole(durable: Bool) throws {
        let directory = try TemporaryDirectory(prefix: "atomic-write")
        let path = directory.path + "/record"
        try writeAtomically(path, Array("old".utf8), durable: durable)
        try writeAtomically(path, Array("new".utf8), mode: 0o600, durable: durable)
        #expect(read(path) == "new")
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(names(directory.path) == ["record"])
        try directory.remove()
    }

    /// The write itself fails: a full file system (a 16 KiB tmpfs).
    @Test func aFailedWriteLeavesNoTemporaryFileAndTheOldContents() throws {
        let directory = try TemporaryDirectory(prefix: "atomic-write")
        #expect(mount("tmpfs", directory.path, "tmpfs", 0, "size=16k") == 0)
        defer { umount2(directory.path, Int32(MNT_DETACH)) }
        let path = directory.path + "/record"
        try writeAtomically(path, Array("old".utf8))
        do {
            try writeAtomically(path, [UInt8](repeating: 0x61, count: 1 << 20))
            Issue.record("a 1 MiB write into a 16 KiB tmpfs succeeded")
        } catch {
            #expect(error.errno == .noSpace)
        }
        #expect(names(directory.path) == ["record"])
        #expect(read(path) == "old")
        #expect(umount2(directory.path, 0) == 0)
        try directory.remove()
    }

    /// The rename fails: a non-empty directory is in the way.
    @Test func aFailedRenameLeavesNoTemporaryFile() throws {
        let directory = try TemporaryDirectory(prefix: "atomic-write")
        let path = directory.path + "/record"
        mkdir(path, 0o755)
        mkdir(path + "/inside", 0o755)
        #expect(throws: SystemError.self) { try writeAtomically(path, Array("new".utf8)) }
        #expect(names(directory.path) == ["record"])
        try removeTree(path)
        try directory.remove()
    }
}
