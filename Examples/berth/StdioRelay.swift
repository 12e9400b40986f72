import ContainerKernel
import FoundationEssentials
import SystemPackage
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// Berth's stdio for a process without a terminal, relayed through pipes of berth's own.
///
/// A container must never hold one of berth's descriptors: through `/proc/self/fd/N` it reopens
/// whatever is behind it (the host file behind `>>` or `<`, berth's terminal), reads it, and
/// writes to it after berth has returned. The process gets the write ends of two pipes for
/// stdout and stderr, and the read end of a third for stdin when `interactive` (`/dev/null`
/// otherwise); berth copies them to and from its own stdio.
///
/// Berth returns when the process exits: everything it wrote is relayed first, then whatever
/// processes it left in the background write within ``grace``; after that the pipes close and
/// their writes fail with `EPIPE`. (`docker exec` waits until every holder has closed them, and
/// hangs on a background process that keeps them open: moby/moby#33039.)
struct StdioRelay {
    /// How long the relay goes on after the process exited, for output its background
    /// processes write at the same moment.
    static let grace: Duration = .milliseconds(100)

    /// The spawn's stdio: the child's ends of the pipes.
    private let io: ProcessIO
    private var childEnds: [Int32]
    private let output: Int32, error: Int32, input: Int32?
    /// Closing the write end tells the copying thread that the process has exited.
    private let exited: (read: Int32, write: Int32)

    /// Spawns a process on pipes of berth's own and relays its stdio until it ends.
    ///
    /// - Parameters:
    ///   - interactive: Copy berth's stdin to the process (`-i`); otherwise it reads `/dev/null`.
    ///   - spawn: Starts the process with the stdio it is given.
    /// - Returns: How the process ended.
    /// - Throws: What `spawn` throws, or ``KernelError`` when the pipes cannot be made.
    static func run(interactive: Bool, _ spawn: (ProcessIO) async throws -> ProcessHandle) async throws -> ExitStatus {
        var relay = try StdioRelay(interactive: interactive)
        let process: ProcessHandle
        do {
            process = try await spawn(relay.io)
        } catch {
            relay.cancel()
            throw error
        }
        return await relay.run(process)
    }

    /// Makes the pipes (close-on-exec: the spawn places the child's ends itself).
    ///
    /// - Parameter interactive: Copy berth's stdin to the process (`-i`); otherwise it reads `/dev/null`.
    /// - Throws: ``KernelError`` when the pipes cannot be made.
    private init(interactive: Bool) throws(KernelError) {
        var made: [Int32] = []
        func pipeEnds() throws(KernelError) -> (read: Int32, write: Int32) {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else {
                let failure = KernelError(code: .syscallFailed, errno: Errno(rawValue: errno), detail: "pipe for the process's stdio")
                made.forEach { close($0) }
                throw failure
            }
            // berth spawns nothing else meanwhile; the spawn dup2s the child's ends into place.
            fds.forEach { _ = fcntl($0, F_SETFD, FD_CLOEXEC) }
            made += fds
            return (fds[0], fds[1])
        }
        let out = try pipeEnds(), err = try pipeEnds()
        let stdin = interactive ? try pipeEnds() : nil
        let exited = try pipeEnds()
        // Non-blocking on berth's side only (the child's ends are other file descriptions): a
        // process that reads its own stdout back through /proc must not stall the relay.
        _ = fcntl(out.read, F_SETFL, O_NONBLOCK)
        _ = fcntl(err.read, F_SETFL, O_NONBLOCK)
        self.output = out.read
        self.error = err.read
        self.input = stdin?.write
        self.exited = exited
        childEnds = [out.write, err.write] + (stdin.map { [$0.read] } ?? [])
        io = ProcessIO(
            standardInput: stdin.map { .fileDescriptor(FileDescriptor(rawValue: $0.read)) } ?? .null,
            standardOutput: .fileDescriptor(FileDescriptor(rawValue: out.write)),
            standardError: .fileDescriptor(FileDescriptor(rawValue: err.write)))
    }

    /// Relays until the process has exited and its output is copied, and returns its status.
    ///
    /// Call it right after the spawn: it first closes berth's copies of the child's ends, so
    /// that the process's exit is end-of-file.
    private mutating func run(_ process: ProcessHandle) async -> ExitStatus {
        closeChildEnds()
        signal(SIGPIPE, SIG_IGN)  // a closed stdout of berth is EPIPE, handled below
        if let input { Self.startThread { Self.copyInput(to: input) } }
        let (output, error, exited) = (output, error, exited.read)
        let copied = Task {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                Self.startThread {
                    Self.copyOutputs(output: output, error: error, exited: exited)
                    done.resume()
                }
            }
        }
        let status = await process.exited()  // the CLI is never cancelled; the relay must end
        close(self.exited.write)
        await copied.value
        close(exited)
        return status
    }

    /// Closes everything after a failed spawn.
    private mutating func cancel() {
        closeChildEnds()
        ([output, error, exited.read, exited.write] + (input.map { [$0] } ?? [])).forEach { close($0) }
    }

    private mutating func closeChildEnds() {
        childEnds.forEach { close($0) }
        childEnds = []
    }

    /// Runs `body` on a thread of its own: the copies block in `read` and `poll`, which must
    /// not hold a thread of the cooperative pool.
    private static func startThread(_ body: @escaping @Sendable () -> Void) {
        DedicatedThread(name: "berth-stdio", body: body).start()
    }

    /// Copies berth's stdin into the pipe and closes it at end-of-file, so the process reads
    /// end-of-file too; stops when the process has closed its end.
    private static func copyInput(to pipe: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        copying: while true {
            let count = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            guard writeAll(pipe, buffer[0..<count]) else { break copying }
        }
        close(pipe)
    }

    /// Copies both pipes to berth's stdout and stderr until the process has exited (`exited`
    /// hangs up), its output is copied and ``grace`` has passed, or both pipes reached end-of-file.
    /// Closes both read ends.
    private static func copyOutputs(output: Int32, error: Int32, exited: Int32) {
        // A stream is (its read end, berth's fd); nil once it ended or berth's side failed.
        var streams: [(from: Int32, to: Int32)?] = [(output, 1), (error, 2)]
        var deadline: ContinuousClock.Instant?
        func copy(_ index: Int, upTo limit: Int = .max) {
            guard let stream = streams[index] else { return }
            var buffer = [UInt8](repeating: 0, count: 65536)
            var left = limit
            while left > 0 {
                let count = buffer.withUnsafeMutableBytes { read(stream.from, $0.baseAddress, min($0.count, left)) }
                if count < 0 && errno == EINTR { continue }
                if count < 0 && errno == EAGAIN { return }
                guard count > 0, writeAll(stream.to, buffer[0..<count]) else {
                    // End-of-file, or berth's own stdout is gone: closing the read end makes
                    // the process's next write fail as it would have on berth's descriptor.
                    close(stream.from)
                    streams[index] = nil
                    return
                }
                left -= count
                if limit == .max { return }  // one chunk per wake-up keeps both streams moving
            }
        }
        while streams.contains(where: { $0 != nil }) {
            var polled = streams.compactMap { $0.map { pollfd(fd: $0.from, events: Int16(POLLIN), revents: 0) } }
            if deadline == nil { polled.append(pollfd(fd: exited, events: Int16(POLLIN), revents: 0)) }
            var timeout: Int32 = -1
            if let deadline {
                let left = ContinuousClock.now.duration(to: deadline)
                if left <= .zero { break }
                timeout = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            }
            let ready = poll(&polled, nfds_t(polled.count), timeout)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { if ready == 0 { continue } else { break } }
            let streamReady = { (fd: Int32) in polled.contains { $0.fd == fd && $0.revents != 0 } }
            for index in streams.indices {
                if let stream = streams[index], streamReady(stream.from) { copy(index) }
            }
            if deadline == nil, polled.last.map({ $0.fd == exited && $0.revents != 0 }) == true {
                // Everything the process wrote is in the pipes now: copy all of it (however
                // long that takes), then give background writers the grace period.
                for index in streams.indices {
                    guard let stream = streams[index] else { continue }
                    var buffered: Int32 = 0
                    if ioctl(stream.from, UInt(FIONREAD), &buffered) == 0, buffered > 0 {
                        copy(index, upTo: Int(buffered))
                    }
                }
                deadline = .now + grace
            }
        }
        for stream in streams { if let stream { close(stream.from) } }
    }

    /// Writes all of `bytes` to `fd`, waiting while it is full; false when `fd` refuses them
    /// (`EPIPE`, a closed terminal).
    private static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            if written < 0 && errno == EAGAIN {
                // berth's stdio may be non-blocking (a terminal shared with such a program).
                var writable = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&writable, 1, -1)
                continue
            }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }
}
