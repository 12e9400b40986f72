import CSyscalls
import Glibc
public import SystemPackage
import Synchronization
import SystemSupport

/// Where a spawned process's stdin, stdout and stderr go.
public struct ProcessIO: Sendable {
    /// A source for stdin.
    public enum Input: Sendable {
        /// `/dev/null`.
        case null
        /// The host process's own stdin.
        case inherit
        /// A pipe the caller writes through ``ProcessHandle/standardInput``.
        case pipe
        /// A descriptor the caller owns (it stays open in the caller).
        case fileDescriptor(FileDescriptor)
    }

    /// A destination for stdout or stderr.
    public enum Output: Sendable {
        /// `/dev/null`.
        case null
        /// The host process's own stdout (for stdout) or stderr (for stderr).
        case inherit
        /// A pipe read through ``ProcessHandle/standardOutput`` / ``ProcessHandle/standardError``.
        case pipe
        /// A descriptor the caller owns, such as a log file.
        case fileDescriptor(FileDescriptor)
    }

    /// Stdin; `/dev/null` by default.
    public var standardInput: Input
    /// Stdout; a pipe by default.
    public var standardOutput: Output
    /// Stderr; a pipe by default.
    public var standardError: Output
    /// When set, all three go to a pseudo-terminal of this size allocated in the container
    /// (`docker run -t`), read and written through ``ProcessHandle/terminal``.
    public var terminal: TerminalSize?

    /// Describes stdio; the defaults suit collecting a process's output.
    public init(
        standardInput: Input = .null, standardOutput: Output = .pipe, standardError: Output = .pipe,
        terminal: TerminalSize? = nil
    ) {
        self.standardInput = standardInput
        self.standardOutput = standardOutput
        self.standardError = standardError
        self.terminal = terminal
    }

    /// All three go to the host process's own stdio.
    public static var inherit: ProcessIO { ProcessIO(standardInput: .inherit, standardOutput: .inherit, standardError: .inherit) }
    /// All three go to `/dev/null`.
    public static var null: ProcessIO { ProcessIO(standardInput: .null, standardOutput: .null, standardError: .null) }
}

/// The size of a terminal in character cells.
public struct TerminalSize: Sendable, Hashable {
    /// Rows.
    public var rows: UInt16
    /// Columns.
    public var columns: UInt16
    /// A size of `rows` × `columns`.
    public init(rows: UInt16, columns: UInt16) {
        self.rows = rows
        self.columns = columns
    }
}

/// Output of a process, as chunks of bytes in the order they were written.
///
/// Read it as it comes (`for await chunk in output`) or all at once (``collect()``). It ends
/// when the process (and every process that inherited the descriptor) has closed it.
public struct ProcessOutput: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    private let stream: AsyncStream<[UInt8]>

    /// Starts draining `fd` (which it then owns and closes at end of stream) on the I/O loop.
    init(owning fd: Int32) throws(KernelError) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
        self.stream = stream
        let token = Mutex<UInt64?>(nil)
        let finished = Mutex(false)
        let drain: IOLoop.Handler = { _ in
            // Runs on the loop thread only, so reads never race each other.
            guard !finished.withLock({ $0 }) else { return }
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    continuation.yield(Array(buffer[0..<n]))
                    continue
                }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
                // EOF, or EIO from a terminal whose other side closed: the stream ends.
                finished.withLock { $0 = true }
                if let registered = token.withLock({ $0 }) { IOLoop.shared.unregister(fd, token: registered) }
                close(fd)
                continuation.finish()
                return
            }
        }
        let registered: UInt64
        do {
            registered = try IOLoop.shared.register(fd, events: UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue), handler: drain)
        } catch {
            close(fd)
            throw error
        }
        token.withLock { $0 = registered }
        // The stream may have ended before the token was stored.
        if finished.withLock({ $0 }) { IOLoop.shared.unregister(fd, token: registered) }
    }

    public func makeAsyncIterator() -> AsyncStream<[UInt8]>.AsyncIterator { stream.makeAsyncIterator() }

    /// Reads everything until the end of the stream.
    ///
    /// - Returns: All bytes written.
    public func collect() async -> [UInt8] {
        var all: [UInt8] = []
        for await chunk in stream { all += chunk }
        return all
    }

    /// Reads everything until the end of the stream as UTF-8 text.
    ///
    /// - Returns: The text, with invalid bytes replaced.
    public func collectString() async -> String {
        String(decoding: await collect(), as: UTF8.self)
    }
}

/// The write end of a process's stdin (or of its terminal).
public actor ProcessInput {
    private var fd: Int32?

    init(owning fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        self.fd = fd
    }

    /// Writes all of `bytes`, waiting while the pipe is full.
    ///
    /// - Throws: ``KernelError`` (`EPIPE` when the process closed its stdin; ``KernelError/Code/invalidState``
    ///   after ``close()``).
    public func write(_ bytes: [UInt8]) async throws(KernelError) {
        var offset = 0
        while offset < bytes.count {
            guard let fd else { throw KernelError(code: .invalidState, detail: "write to stdin after close") }
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress.map { $0 + offset }, $0.count - offset) }
            if n >= 0 {
                offset += n
            } else if errno == EAGAIN {
                try await IOLoop.shared.waitWritable(fd)
            } else if errno != EINTR {
                throw KernelError(code: .syscallFailed, errno: Errno(rawValue: errno), detail: "write to stdin")
            }
        }
    }

    /// Writes `text` as UTF-8.
    ///
    /// - Throws: As ``write(_:)-([UInt8])``.
    public func write(_ text: String) async throws(KernelError) { try await write(Array(text.utf8)) }

    /// Closes stdin: the process reads end of file.
    public func close() {
        if let fd { _ = Glibc.close(fd) }
        fd = nil
    }

    deinit {
        if let fd { _ = Glibc.close(fd) }
    }
}

/// The host side of a process's pseudo-terminal.
public final class Terminal: Sendable {
    /// What the process writes to the terminal (stdout and stderr together, as on a real tty).
    public let output: ProcessOutput
    /// Keystrokes for the process.
    public let input: ProcessInput
    private let control: Int32

    init(master: Int32, size: TerminalSize) throws(KernelError) {
        let readEnd = try KernelError.from(try sys("dup terminal") { dup(master) })
        let controlEnd: Int32
        do {
            controlEnd = try KernelError.from(try sys("dup terminal") { dup(master) })
        } catch {
            close(readEnd)
            close(master)
            throw error
        }
        control = controlEnd
        input = ProcessInput(owning: master)
        do {
            output = try ProcessOutput(owning: readEnd)
        } catch {
            // Not every property is set, so deinit will not run: close the control end here
            // (the input actor owns and closes the master, the output closed its read end).
            close(controlEnd)
            throw error
        }
        try resize(size)
    }

    /// Changes the window size; the process gets `SIGWINCH`.
    ///
    /// - Throws: ``KernelError`` when the terminal is gone.
    public func resize(_ size: TerminalSize) throws(KernelError) {
        _ = try KernelError.from(try sys("resize terminal") { ck_set_winsize(control, size.rows, size.columns) })
    }

    deinit { close(control) }
}
