// Whole-file reads: the host's own files, and content another party controls read inside its
// root as regular files with a cap (issue 10, items 3 and 7a; issue 11, one systems layer).

import Glibc
import Synchronization
@testable import SystemSupport
import Testing
import TestSupport

@Suite(.serialized)
struct FileContentTests {
    /// `/etc/passwd`-style reads: inside the root, regular files only, at most `limit` bytes.
    @Test func smallFilesAreReadInsideTheRootAsRegularFilesUpToTheLimit() throws {
        let root = try TemporaryDirectory(prefix: "filecontent")
        defer { try? root.remove() }
        let host = root.path + "/host-passwd"
        try writeBytes(Array("host:x:4242:4242::/:/bin/sh\n".utf8), to: host)
        for directory in ["rootfs", "rootfs/etc", "rootfs/usr"] { #expect(mkdir(root.path + "/" + directory, 0o755) == 0) }
        let rootfs = root.path + "/rootfs"
        func read(_ path: String) throws(SystemError) -> [UInt8]? { try readRegularFile(path, inRoot: rootfs, limit: 64) }

        #expect(try read("/etc/passwd") == nil)
        try writeBytes(Array("root:x:0:0::/root:/bin/sh\n".utf8), to: rootfs + "/usr/passwd")
        #expect(symlink("../usr/passwd", rootfs + "/etc/passwd") == 0)
        #expect(try read("/etc/passwd") == Array("root:x:0:0::/root:/bin/sh\n".utf8))
        // An absolute symlink means the container's path, never the host's; `..` stops at the root.
        #expect(unlink(rootfs + "/etc/passwd") == 0)
        #expect(symlink(host, rootfs + "/etc/passwd") == 0)
        #expect(try read("/etc/passwd") == nil)
        #expect(symlink("/../../../" + host, rootfs + "/etc/group") == 0)
        #expect(try read("/etc/group") == nil)
        #expect(symlink("../../../../../../../../" + host, rootfs + "/etc/shadow") == 0)
        #expect(try read("/etc/shadow") == nil)
        #expect(try read("/../../../../" + host) == nil)

        #expect(unlink(rootfs + "/etc/passwd") == 0)
        try writeBytes([UInt8](repeating: 0x61, count: 65), to: rootfs + "/etc/passwd")
        do {
            _ = try read("/etc/passwd")
            Issue.record("a file above the limit was read")
        } catch {
            #expect(error.kind == .tooLarge && error.path == "/etc/passwd", "\(error)")
        }
        try writeBytes([UInt8](repeating: 0x61, count: 64), to: rootfs + "/etc/passwd")
        #expect(try read("/etc/passwd")?.count == 64)

        // A directory is not read as a file.
        do {
            _ = try read("/etc")
            Issue.record("a directory was read")
        } catch {
            #expect(error.kind == .unexpectedFile, "\(error)")
        }
    }

    /// A FIFO or device at the path is refused, never read and never waited on.
    @Test(arguments: ["fifo", "null", "zero"])
    func aFifoOrDeviceIsRefusedWithoutBlocking(_ kind: String) throws {
        let root = try TemporaryDirectory(prefix: "filecontent")
        defer { try? root.remove() }
        #expect(mkdir(root.path + "/etc", 0o755) == 0)
        let path = root.path + "/etc/passwd"
        switch kind {
        case "fifo": #expect(mkfifo(path, 0o644) == 0)
        case "null": #expect(mknod(path, S_IFCHR | 0o644, dev_t((1 << 8) | 3)) == 0)
        default: #expect(mknod(path, S_IFCHR | 0o644, dev_t((1 << 8) | 5)) == 0)
        }
        let outcomes = Mutex<[SystemError.Kind?]>([])
        let rootPath = root.path
        let finished = finishes(within: 10, {
            func kind(_ read: () throws(SystemError) -> Void) -> SystemError.Kind? {
                do { try read() } catch { return error.kind }
                return nil
            }
            let kinds = [kind { () throws(SystemError) in _ = try readRegularFile("/etc/passwd", inRoot: rootPath, limit: 1 << 20) },
                         kind { () throws(SystemError) in _ = try readWholeFile(path, limit: 1 << 20) }]
            outcomes.withLock { $0 = kinds }
        }, unstick: { openFifoWriter(path) })
        #expect(finished, "a read blocked on the \(kind)")
        #expect(outcomes.withLock { $0 } == [.unexpectedFile, .unexpectedFile], "\(kind)")
    }

    /// A huge file is refused by its size before anything is read (a sparse 64 GiB file would
    /// take minutes and all the memory to read), or read up to the limit when truncating.
    @Test func aHugeFileIsRefusedByItsSize() throws {
        let root = try TemporaryDirectory(prefix: "filecontent")
        defer { try? root.remove() }
        let path = root.path + "/huge"
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        #expect(fd >= 0 && ftruncate(fd, 64 << 30) == 0)
        close(fd)
        let start = ContinuousClock.now
        #expect(throws: SystemError.self) { try readRegularFile("huge", inRoot: root.path, limit: 1 << 20) }
        #expect(throws: SystemError.self) { try readWholeFile(path, limit: 1 << 20) }
        #expect(try readWholeFile(path, limit: 16, truncating: true) == [UInt8](repeating: 0, count: 16))
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    /// Files of /proc report a size of 0: they are read to their end, and the cap still holds.
    @Test func procFilesAreReadToTheirEndUnderTheCap() throws {
        let status = try readWholeFile("/proc/self/status")
        #expect(String(decoding: status, as: UTF8.self).contains("PPid:"))
        #expect(try readWholeFile("/proc/self/status", limit: 10, truncating: true) == Array(status.prefix(10)))
        do {
            _ = try readWholeFile("/proc/self/status", limit: 10)
            Issue.record("a /proc file above the limit was read")
        } catch {
            #expect(error.kind == .tooLarge, "\(error)")
        }
    }

    /// The one directory lister: names with their types, a missing directory as `ENOENT`.
    @Test func directoriesAreListedByPath() throws {
        let root = try TemporaryDirectory(prefix: "filecontent")
        defer { try? root.remove() }
        #expect(mkdir(root.path + "/sub", 0o755) == 0)
        try writeBytes([1], to: root.path + "/file")
        let entries = try directoryEntries(atPath: root.path).sorted { $0.name < $1.name }
        #expect(entries.map(\.name) == ["file", "sub"])
        #expect(entries.map(\.type) == [UInt8(DT_REG), UInt8(DT_DIR)])
        do {
            _ = try directoryEntries(atPath: root.path + "/missing")
            Issue.record("a missing directory was listed")
        } catch {
            #expect(error.is(.noSuchFileOrDirectory), "\(error)")
        }
    }
}
