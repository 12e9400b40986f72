import Containers
import Glibc
import Synchronization
import SystemPackage
import Testing
import TestSupport

/// Issue 10, items 3, 4 and 7: every host-side read of a container's content (cp, export,
/// commit, the user lookup) reads only the regular file it checked, inside the container's
/// root, with a cap; and commit and export pause a running container by default.
///
/// The races are played from the host on the container's root filesystem (what a process in
/// the container does through its own `/`), so that they do not depend on the container's
/// capabilities: one thread keeps replacing `/tmp/race/a`, a regular file, by a FIFO or a
/// device while the runtime reads it.
@Suite(.serialized)
struct HostReadEscapeTests {
    /// What is swapped in for the regular file.
    enum Intruder: String, Sendable, CaseIterable, CustomStringConvertible {
        /// A FIFO: the old open waited for a writer forever.
        case fifo
        /// A character device (1:3, a device any container may use, so the test runs
        /// everywhere): the old code read the device into the archive instead of the file.
        case device
        var description: String { rawValue }
    }

    /// The checked file's content: an archive entry `a` that is a regular file holds exactly this.
    static let marker = [UInt8](repeating: 0x4d, count: 4096)

    /// Whether `error` is a refusal of a file that was a regular file when checked and the
    /// intruder when opened: the window in which the old code hung on the FIFO or read the
    /// device. A row that never meets it proves nothing, so each row expects some.
    static func metTheWindow(_ error: ContainerError) -> Bool {
        "\(error)".contains("changed while it was read")
    }

    @Test(arguments: Intruder.allCases)
    func copyOutNeverReadsAFifoOrDeviceSwappedIn(_ intruder: Intruder) async throws {
        try await withRacingContainer(intruder) { container, race, scratch in
            var windows = 0
            var types: [String: Int] = [:]
            for round in 0..<300 {
                let archive = scratch + "/out-\(round % 2).tar"
                let result = await withDeadline(seconds: 10, unstick: { race.unstick() }) { () throws(ContainerError) in
                    let output = try openOutput(archive)
                    defer { try? output.close() }
                    try container.copyOut("/tmp/race/a", to: output)
                }
                guard let result else {
                    Issue.record("cp blocked on the \(intruder) swapped in (round \(round))")
                    return
                }
                switch result {
                case .success:
                    let (type, content) = try firstEntry(readAll(archive))
                    types[type, default: 0] += 1
                    if type == "0" { #expect(content == Self.marker, "cp read the \(intruder) into the archive") }
                case .failure(let error):
                    #expect(error.code == .layer && "\(error)".contains("/tmp/race/a"), "\(error)")
                    if Self.metTheWindow(error) { windows += 1 }
                }
            }
            #expect(windows > 0, "the race never met the window between the check and the open: \(types)")
        }
    }

    @Test(arguments: Intruder.allCases)
    func exportWithoutPauseNeverReadsAFifoOrDeviceSwappedIn(_ intruder: Intruder) async throws {
        try await withRacingContainer(intruder) { container, race, scratch in
            var windows = 0
            // Until the race has met the window twice (a few in a hundred rounds here, fewer on a
            // loaded machine), at most 500 rounds.
            for round in 0..<500 where windows < 2 {
                let result = await withDeadline(seconds: 20, unstick: { race.unstick() }) { () throws(ContainerError) in
                    let output = try openOutput(scratch + "/export.tar")
                    defer { try? output.close() }
                    try await container.export(to: output, pause: false)
                }
                guard let result else {
                    Issue.record("export blocked on the \(intruder) swapped in (round \(round))")
                    return
                }
                // The race's own names (`a`, and `next` between two flips) are all it changes.
                if case .failure(let error) = result {
                    #expect("\(error)".contains("tmp/race/"), "\(error)")
                    if Self.metTheWindow(error) { windows += 1 }
                }
                if case .success = result, intruder == .device {
                    let listing = try runProgram(["tar", "-xOf", scratch + "/export.tar", "tmp/race/a"])
                    #expect(listing.output.isEmpty || listing.output == String(decoding: Self.marker, as: UTF8.self),
                            "export read the device into the archive")
                }
            }
            #expect(windows > 0, "the race never met the window between the check and the open")
        }
    }

    @Test func commitWithoutPauseNeverReadsAFifoSwappedIn() async throws {
        try await withRacingContainer(.fifo, inUpper: true) { container, race, _ in
            var windows = 0
            // Until the race has met the window twice (a few in a hundred rounds here, fewer on a
            // loaded machine), at most 500 rounds.
            for round in 0..<500 where windows < 2 {
                let result = await withDeadline(seconds: 20, unstick: { race.unstick() }) { () throws(ContainerError) in
                    _ = try await container.commit(pause: false)
                }
                guard let result else {
                    Issue.record("commit blocked on the FIFO swapped in (round \(round))")
                    return
                }
                if case .failure(let error) = result {
                    #expect("\(error)".contains("tmp/race/"), "\(error)")
                    if Self.metTheWindow(error) { windows += 1 }
                }
            }
            #expect(windows > 0, "the race never met the window between the check and the open")
        }
    }

    // MARK: - User lookup

    /// `exec -u NAME` looks NAME up in the container's `/etc/passwd`: an absolute symlink there
    /// means the container's path, not a host file the host runtime would read.
    @Test func passwdSymlinkedToAHostFileIsNotReadOnTheHost() async throws {
        let hostFile = "/tmp/berth-hostpasswd-\(getpid())"
        try writeBytes(Array("escapee:x:4242:4242::/:/bin/sh\n".utf8), to: hostFile)
        defer { unlink(hostFile) }
        try await withSleepingContainer { container, _ in
            let link = try await container.exec(["ln", "-sf", hostFile, "/etc/passwd"])
            #expect(link.status == .exited(0), "\(link.standardError)")
            do throws(ContainerError) {
                let id = try await container.exec(["id", "-u"], user: "escapee")
                Issue.record("the user was found: uid \(id.standardOutput)")
            } catch {
                #expect(error.code == .invalidArgument && "\(error)".contains("unable to find user escapee"), "\(error)")
            }
            // The same name in the container's own file is found.
            _ = try await container.exec(["sh", "-c", "rm /etc/passwd; echo 'escapee:x:1234:1234::/:/bin/sh' > /etc/passwd"])
            #expect(try await container.exec(["id", "-u"], user: "escapee").standardOutput == "1234\n")
        }
    }

    /// A FIFO as `/etc/passwd`: a typed error, not a host thread blocked for good.
    @Test func passwdAsAFifoIsAnErrorNotAHang() async throws {
        try await withSleepingContainer { container, _ in
            let passwd = container.directory + "/rootfs/etc/passwd"
            #expect(unlink(passwd) == 0 && mkfifo(passwd, 0o644) == 0)
            let result = await withDeadline(seconds: 10, unstick: { openFifoWriter(passwd) }) { () throws(ContainerError) in
                _ = try await container.exec(["id", "-u"], user: "nobody")
            }
            guard let result else {
                Issue.record("exec -u blocked on /etc/passwd as a FIFO")
                return
            }
            guard case .failure(let error) = result else {
                Issue.record("exec -u read a FIFO as /etc/passwd")
                return
            }
            #expect(error.code == .invalidArgument && "\(error)".contains("/etc/passwd") && "\(error)".contains("fifo"),
                    "\(error)")
        }
    }

    /// A `/etc/passwd` larger than the cap, or an endless device there: a typed error naming
    /// the file, never the host's memory.
    ///
    /// Without the cap the `zero` case reads `/dev/zero` until the host runs out of memory: to
    /// see it fail on code without the fix, run it only inside a memory-limited cgroup.
    @Test(arguments: ["huge", "zero"])
    func passwdAboveTheCapIsAnError(_ kind: String) async throws {
        try await withSleepingContainer { container, _ in
            let passwd = container.directory + "/rootfs/etc/passwd"
            #expect(unlink(passwd) == 0)
            if kind == "huge" {
                var bytes = Array("big:x:777:777::/:/bin/sh\n".utf8)
                bytes += [UInt8](repeating: 0x23, count: 5 << 20)
                try writeBytes(bytes, to: passwd)
            } else {
                #expect(mknod(passwd, S_IFCHR | 0o644, dev_t((1 << 8) | 5)) == 0)
            }
            let result = await withDeadline(seconds: 10, unstick: {}) { () throws(ContainerError) in
                _ = try await container.exec(["id", "-u"], user: "big")
            }
            guard case .failure(let error) = result else {
                Issue.record("exec -u read a \(kind) /etc/passwd: \(String(describing: result))")
                return
            }
            #expect(error.code == .invalidArgument && "\(error)".contains("/etc/passwd"), "\(error)")
        }
    }

    // MARK: - Pause

    /// `docker commit` pauses a running container while it reads its changes, and resumes it;
    /// `pause: false` leaves it running; a paused container stays paused.
    @Test func commitAndExportPauseARunningContainerUnlessTold() async throws {
        let runtime = try await TestRuntime.shared()
        try await withSleepingContainer { container, scratch in
            let recorded = EventLog()
            let events = runtime.events()
            let id = container.id
            let listener = Task {
                for await event in events where event.containerID == id {
                    recorded.actions.withLock { $0.append(event.action) }
                }
            }
            defer { listener.cancel() }
            func actions(after operation: () async throws -> Void) async throws -> [ContainerEvent.Action] {
                recorded.actions.withLock { $0 = [] }
                try await operation()
                try await Task.sleep(for: .milliseconds(200))
                return recorded.actions.withLock { $0 }
            }
            _ = try await container.exec(["sh", "-c", "echo changed > /tmp/changed"])

            #expect(try await actions { _ = try await container.commit() } == [.pause, .unpause])
            #expect(container.state.status == .running)
            #expect(try await actions { _ = try await container.commit(pause: false) } == [])
            #expect(try await actions {
                let output = try openOutput(scratch + "/export.tar")
                defer { try? output.close() }
                try await container.export(to: output)
            } == [.pause, .unpause])
            #expect(container.state.status == .running)

            // Its own pause event is awaited first, so that it is not taken for the commit's.
            #expect(try await actions { try await container.pause() } == [.pause])
            #expect(try await actions { _ = try await container.commit() } == [])
            #expect(container.state.status == .paused)
            try await container.resume()
        }
    }
}

// MARK: - Helpers

/// The actions of the events a listener saw.
private final class EventLog: Sendable {
    let actions = Mutex<[ContainerEvent.Action]>([])
}

/// The host side of the race: `/tmp/race/a` of the container's root filesystem flips between a
/// regular file (`reg`, hard-linked) and the intruder (`alt`) until ``stop()``.
private final class Race: @unchecked Sendable {
    let directory: String
    private let running = Atomic<Bool>(true)
    private var thread = pthread_t()

    init(tree: String, intruder: HostReadEscapeTests.Intruder) throws {
        directory = tree + "/tmp/race"
        _ = mkdir(tree + "/tmp", 0o1777)
        guard mkdir(directory, 0o755) == 0 else { throw TestSupportError("mkdir \(directory)") }
        try writeBytes(HostReadEscapeTests.marker, to: directory + "/reg")
        switch intruder {
        case .fifo: guard mkfifo(directory + "/alt", 0o644) == 0 else { throw TestSupportError("mkfifo") }
        case .device:
            guard mknod(directory + "/alt", S_IFCHR | 0o644, dev_t((1 << 8) | 3)) == 0 else { throw TestSupportError("mknod") }
        }
        guard link(directory + "/reg", directory + "/a") == 0 else { throw TestSupportError("link") }
        let box = Unmanaged.passRetained(self).toOpaque()
        guard pthread_create(&thread, nil, { raw in
            let race = Unmanaged<Race>.fromOpaque(raw!).takeRetainedValue()
            race.flip()
            return nil
        }, box) == 0 else {
            Unmanaged<Race>.fromOpaque(box).release()
            throw TestSupportError("pthread_create")
        }
    }

    private func flip() {
        let fd = open(directory, O_PATH | O_DIRECTORY | O_CLOEXEC)
        defer { close(fd) }
        while running.load(ordering: .relaxed) {
            for source in ["reg", "alt"] {
                linkat(fd, source, fd, "next", 0)
                renameat(fd, "next", fd, "a")
                // A rename onto a link of the same file does nothing and leaves `next`.
                unlinkat(fd, "next", 0)
            }
        }
    }

    /// Releases a reader blocked in opening the FIFO (the old code's hang).
    func unstick() {
        stop()
        openFifoWriter(directory + "/alt")
    }

    func stop() {
        guard running.exchange(false, ordering: .relaxed) else { return }
        pthread_join(thread, nil)
    }
}

private let O_PATH: Int32 = 0o10000000

/// Runs `body` with a running container that sleeps, with the race on its `/tmp/race/a`,
/// and a scratch directory; removes all and checks for leaks.
///
/// With `inUpper`, the race runs in overlay's upper directory, the tree commit reads: flips
/// through the overlay mount are too slow to meet commit's short window between its lstat and
/// its open of the same name there.
private func withRacingContainer(
    _ intruder: HostReadEscapeTests.Intruder, inUpper: Bool = false,
    _ body: (Container, Race, _ scratch: String) async throws -> Void
) async throws {
    try await withSleepingContainer { container, scratch in
        let upper = container.directory + "/upper"
        let tree = inUpper && access(upper, F_OK) == 0 ? upper : container.directory + "/rootfs"
        let race = try Race(tree: tree, intruder: intruder)
        defer { race.unstick() }
        try await body(container, race, scratch)
    }
}

/// Runs `body` with a running busybox container that sleeps and a scratch directory; removes
/// both and checks for leaks (``withContainer(_:_:)`` of the copy tests).
private func withSleepingContainer(_ body: (Container, _ scratch: String) async throws -> Void) async throws {
    try await withContainer({ try await $0.run(busybox(["/bin/probe", "sleep", "60"])) }, body)
}

/// `body`'s result, or `nil` when it has not ended after `seconds`: then `unstick` is called,
/// so that a regression fails the test instead of hanging it, and `body` is waited for.
private func withDeadline(
    seconds: Int, unstick: () -> Void, _ body: @escaping @Sendable () async throws(ContainerError) -> Void
) async -> Result<Void, ContainerError>? {
    let outcome = Mutex<Result<Void, ContainerError>?>(nil)
    let task = Task.detached {
        let result: Result<Void, ContainerError>
        do throws(ContainerError) {
            try await body()
            result = .success(())
        } catch {
            result = .failure(error)
        }
        outcome.withLock { $0 = result }
    }
    for _ in 0..<(seconds * 100) {
        if let result = outcome.withLock({ $0 }) { return result }
        try? await Task.sleep(for: .milliseconds(10))
    }
    unstick()
    await task.value
    return nil
}

private func openOutput(_ path: String) throws(ContainerError) -> FileDescriptor {
    do {
        return try FileDescriptor.open(path, .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
    } catch {
        throw ContainerError(code: .io, detail: "open \(path): \(error)")
    }
}

private func readAll(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw TestSupportError("open \(path)") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return bytes }
        bytes += buffer[0..<n]
    }
}

/// The type flag and content of a tar's first entry (a ustar header: size in octal at 124,
/// type at 156, content from 512).
private func firstEntry(_ tar: [UInt8]) throws -> (type: String, content: [UInt8]) {
    guard tar.count >= 512 else { throw TestSupportError("short tar") }
    let sizeField = String(decoding: tar[124..<136].prefix { $0 != 0 && $0 != 0x20 }, as: UTF8.self)
    guard let size = Int(sizeField, radix: 8), tar.count >= 512 + size else { throw TestSupportError("bad tar size") }
    return (String(UnicodeScalar(tar[156])), Array(tar[512..<(512 + size)]))
}
