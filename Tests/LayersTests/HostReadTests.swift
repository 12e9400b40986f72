import Dispatch
import Glibc
@testable import Layers
import SystemPackage
import Testing
import TestSupport

/// Host-side reads of a tree that a container controls (issue 10, items 3, 4 and 7a): what the
/// reader checked is what it reads, a FIFO or device put in its place is never read (and never
/// blocks the reader), and a mode change after `mknodat` never follows a symlink put in the
/// node's place. (Small files read inside the root with a cap: SystemSupportTests.)
@Suite(.serialized)
struct HostReadTests {
    /// What is put at a name after the writer checked it as a regular file.
    enum Swap: String, Sendable, CaseIterable, CustomStringConvertible {
        case fifo, null, zero, otherFile, symlink
        var description: String { rawValue }

        func make(_ path: String, host: String) {
            switch self {
            case .fifo: #expect(mkfifo(path, 0o644) == 0)
            case .null: #expect(mknod(path, S_IFCHR | 0o644, dev_t((1 << 8) | 3)) == 0)
            case .zero: #expect(mknod(path, S_IFCHR | 0o644, dev_t((1 << 8) | 5)) == 0)
            case .otherFile: #expect((try? writeBytes(Array("someone else's".utf8), to: path)) != nil)
            case .symlink: #expect(Glibc.symlink(host, path) == 0)
            }
        }
    }

    /// The tar writer reads a file that was checked with lstat: whatever is swapped in after the
    /// check is refused with `unexpectedFile` naming the path, nothing of it is read, and a FIFO
    /// does not block the writer (the old open waited for a FIFO writer that never came).
    @Test(arguments: Swap.allCases)
    func tarWriterRefusesWhatWasSwappedInAfterTheCheck(_ swap: Swap) throws {
        let root = try TemporaryDirectory(prefix: "hostread")
        defer { try? root.remove() }
        let host = root.path + "/host-secret"
        try writeBytes(Array("host secret".utf8), to: host)
        #expect(mkdir(root.path + "/tree", 0o755) == 0)
        try writeBytes(Array("checked content".utf8), to: root.path + "/tree/a")
        var checked = stat()
        #expect(lstat(root.path + "/tree/a", &checked) == 0)
        // Moved away, not removed: a removed file's inode number could come back for the new one.
        #expect(rename(root.path + "/tree/a", root.path + "/checked") == 0)
        swap.make(root.path + "/tree/a", host: host)

        let parent = open(root.path + "/tree", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(parent) }
        let output = open(root.path + "/out.tar", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { close(output) }
        let outcome = Outcome()
        let stale = checked
        let finished = finishes(within: 10, {
            do throws(LayerError) {
                let writer = try TarStreamWriter(output: output, compression: .none)
                try writer.add("a", in: parent, as: "tree/a", stale)
                _ = try writer.finish()
                outcome.set(nil)
            } catch {
                outcome.set(error)
            }
        }, unstick: { openFifoWriter(root.path + "/tree/a") })
        #expect(finished, "the writer blocked on \(swap)")
        let error = outcome.get()
        #expect(error?.code == .unexpectedFile, "\(swap): \(error.map { "\($0)" } ?? "no error")")
        #expect(error?.entry == "tree/a")
        let archive = readAll(root.path + "/out.tar")
        #expect(!contains(archive, "host secret") && !contains(archive, "someone else's"))
    }

    /// A regular file that grew after it was checked (a running container appending to it) is
    /// copied up to the checked size only, through copy_file_range on one file system and
    /// through the read/write fallback across two (the host's `/tmp` to the tmpfs at
    /// `/dev/shm`, where copy_file_range says EXDEV): the old fallback read on to EOF.
    @Test(arguments: ["same file system", "across file systems"])
    func aCopyNeverReadsPastTheCheckedSize(_ placement: String) throws {
        let root = try TemporaryDirectory(prefix: "hostread")
        defer { try? root.remove() }
        try writeBytes([UInt8](repeating: 0x61, count: 3 << 20), to: root.path + "/grown")
        let target = placement == "same file system" ? root.path + "/copy" : "/dev/shm/berth-hostread-\(getpid())"
        defer { unlink(target) }
        let from = open(root.path + "/grown", O_RDONLY | O_CLOEXEC)
        defer { close(from) }
        let to = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { close(to) }
        try copyContent(from: from, to: to, size: 4096 + 17, path: "grown")
        var st = stat()
        #expect(fstat(to, &st) == 0)
        #expect(st.st_size == 4096 + 17, "\(placement): copied \(st.st_size) bytes")
    }

    /// A FIFO entry unpacked into a directory where another thread keeps putting a symlink to a
    /// host file in the node's place: the mode set after `mknodat` lands on the node or
    /// nowhere, never on the host file (the old `fchmodat` followed the symlink).
    @Test func theModeOfANewNodeNeverFollowsASymlinkSwappedIn() throws {
        let root = try TemporaryDirectory(prefix: "hostread")
        defer { try? root.remove() }
        let host = root.path + "/host-file"
        try writeBytes(Array("host".utf8), to: host)
        #expect(chmod(host, 0o600) == 0)
        #expect(mkdir(root.path + "/tree", 0o755) == 0)
        let archive = root.path + "/node.tar"
        _ = try TarFixture.write([TarEntry("node", .fifo, mode: 0o607)], to: archive)

        let stop = Outcome()
        let racer = DispatchSemaphore(value: 0)
        let tree = open(root.path + "/tree", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(tree) }
        DispatchQueue.global().async {
            while !stop.isSet {
                unlinkat(tree, "node", 0)
                symlinkat(host, tree, "node")
            }
            racer.signal()
        }
        // Until the race has met the window a few times (about 1 in 400 rounds here; fewer on a
        // loaded machine), within a time bound.
        var windows = 0
        let deadline = ContinuousClock.now + .seconds(60)
        while windows < 3 && ContinuousClock.now < deadline {
            let input = try FileDescriptor.open(archive, .readOnly)
            defer { try? input.close() }
            // Refusals and vanished names are expected; only the host file matters.
            do throws(LayerError) {
                try extractArchive(from: input, into: "/", in: root.path + "/tree", preservingOwners: false)
            } catch where error.code == .unexpectedFile {
                windows += 1  // the symlink came between mknodat and the mode change
            } catch {}
        }
        stop.set(nil)
        racer.wait()
        #expect(windows > 0, "the race never met the window between mknodat and the mode change")
        var st = stat()
        #expect(lstat(host, &st) == 0)
        #expect(st.st_mode & 0o7777 == 0o600, "host file mode is \(String(st.st_mode & 0o7777, radix: 8))")
    }
}

/// A result handed from a worker thread, and a stop flag.
private final class Outcome: @unchecked Sendable {
    private let lock = ThreadLock()
    private var error: LayerError?
    private var done = false

    func set(_ error: LayerError?) { lock.locked { self.error = error; done = true } }
    func get() -> LayerError? { lock.locked { error } }
    var isSet: Bool { lock.locked { done } }
}

/// A pthread mutex, for the worker threads above (no Foundation here).
private final class ThreadLock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }
}

private func contains(_ bytes: [UInt8], _ text: String) -> Bool {
    let needle = Array(text.utf8)
    guard bytes.count >= needle.count else { return false }
    return (0...(bytes.count - needle.count)).contains { Array(bytes[$0..<($0 + needle.count)]) == needle }
}
