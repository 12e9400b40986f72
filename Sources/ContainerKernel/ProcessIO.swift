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
/// Read it as it comes (`for await chunk in output`) or all at once with a bound
/// (``collect(limit:)``). It ends when the process (and every process that inherited the
/// descriptor) has closed it. One reader reads it, once.
///
/// Reading costs no thread: Berth's I/O thread reads the pipe as fast as the reader takes
/// what was read. Until the reader starts, the process can fill the pipe (64 KiB); when the
/// reader is 1 MiB behind, the pipe is left unread until it catches up, so the process blocks
/// on its next write, as on any pipe, and memory stays bounded whatever it writes. A reader
/// that stops for good (its task cancelled while it waits for a chunk, or its iterator
/// dropped) makes the rest be read and dropped, so the process never blocks on it; so does
/// letting go of every copy of the output without reading it.
public struct ProcessOutput: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    /// The pipe; a `ContainerOutput` of the process reads it instead of this sequence.
    package let pipe: OutputPipe
    private let queue = OutputQueue<[UInt8]>(size: { $0.count })

    /// Takes `fd`, the host end of the pipe, which it closes at the end of the stream.
    init(owning fd: Int32) {
        pipe = OutputPipe(owning: fd)
    }

    /// Reads the chunks as they come.
    public struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate var base: OutputQueue<[UInt8]>.Iterator

        /// The next chunk, or `nil` at the end of the stream (or when the calling task is cancelled).
        public mutating func next() async -> [UInt8]? { await base.next() }
    }

    /// Starts reading (the first call starts the pipe's drain).
    public func makeAsyncIterator() -> AsyncIterator {
        queue.read([(pipe, { $0 })])
        return AsyncIterator(base: queue.makeIterator())
    }

    /// Reads to the end, keeping at most `limit` bytes; the rest is read and dropped, so the
    /// process is never blocked by a full pipe and memory stays bounded by `limit` whatever it
    /// writes.
    ///
    /// - Parameter limit: The most bytes kept: the first `limit` bytes written.
    /// - Returns: What was kept, and whether anything was dropped.
    public func collect(limit: Int) async -> CollectedBytes {
        queue.read([(pipe, { $0 })])
        var bytes: [UInt8] = []
        let truncated = await queue.collect(limit: limit) { chunk, count in bytes += chunk.prefix(count) }
        return CollectedBytes(bytes: bytes, truncated: truncated)
    }
}

/// Output read to its end with ``ProcessOutput/collect(limit:)``.
public struct CollectedBytes: Sendable, Hashable {
    /// The bytes kept, the first ones written.
    public var bytes: [UInt8]
    /// Whether more was written, and dropped.
    public var truncated: Bool

    /// The bytes as UTF-8 text, invalid bytes replaced.
    public var text: String { String(decoding: bytes, as: UTF8.self) }
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
        output = ProcessOutput(owning: readEnd)
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
