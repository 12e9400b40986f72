public import ContainerKernel
import Synchronization

/// A piece of what a container's process wrote to one of its streams.
public struct OutputChunk: Sendable, Hashable {
    /// The stream it was written to (a terminal's output counts as stdout).
    public var stream: LogEntry.Stream
    /// The bytes, as one read returned them: not split at lines.
    public var bytes: [UInt8]

    /// A chunk of `bytes` written to `stream`.
    public init(stream: LogEntry.Stream, bytes: [UInt8]) {
        self.stream = stream
        self.bytes = bytes
    }
}

/// What a process writes, stdout and stderr apart, chunk by chunk as Berth reads them from
/// their pipes: in order within a stream, and across the streams in the order the reads
/// happened.
///
/// Read it as it comes (`for await chunk in output`), or all at once with a bound
/// (``collect(limit:)``). It ends when the process, and every process that inherited its
/// stdout and stderr, has closed them. Reading it costs no thread: the pipes are watched by
/// Berth's I/O thread. At most about 1 MiB that the reader has not taken yet is held in memory
/// per stream; beyond it the pipes are left unread and the process blocks on its next write,
/// as on any pipe, until the reader catches up. A reader that stops for good (its task is
/// cancelled, or it drops the sequence and its iterators) makes the rest be read and
/// dropped, so the process never blocks on it.
public struct ContainerOutput: AsyncSequence, Sendable {
    public typealias Element = OutputChunk
    private let chunks: AsyncStream<OutputChunk>
    private let reader: Reader

    /// The reader's side: when no copy of the sequence or of an iterator is left, the merge
    /// stops, which makes the pipes' readers drop the rest.
    fileprivate final class Reader: Sendable {
        let budget = ReadBudget()
        let merge = Mutex<Task<Void, Never>?>(nil)
        deinit {
            budget.close()
            merge.withLock { $0?.cancel() }
        }
    }

    /// Merges the process's stdout and stderr (or its terminal).
    init(of process: ProcessHandle) {
        let (chunks, continuation) = AsyncStream<OutputChunk>.makeStream()
        let reader = Reader()
        let budget = reader.budget
        self.chunks = chunks
        self.reader = reader
        let merge = Task.detached {
            await withTaskGroup(of: Void.self) { group in
                let sources: [(ProcessOutput?, LogEntry.Stream)] = [
                    (process.standardOutput, .stdout), (process.standardError, .stderr), (process.terminal?.output, .stdout),
                ]
                for case let (source?, stream) in sources {
                    group.addTask {
                        for await bytes in source {
                            // Holding the next chunk back stops reading the pipe once the
                            // reader of this sequence is behind.
                            await budget.reserve(bytes.count)
                            continuation.yield(OutputChunk(stream: stream, bytes: bytes))
                        }
                    }
                }
            }
            continuation.finish()
        }
        reader.merge.withLock { $0 = merge }
        continuation.onTermination = { termination in
            guard case .cancelled = termination else { return }
            budget.close()
            merge.cancel()
        }
    }

    /// Reads the chunks as they come.
    public struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate var base: AsyncStream<OutputChunk>.AsyncIterator
        fileprivate let reader: Reader

        /// The next chunk, or `nil` at the end (or when the calling task is cancelled).
        public mutating func next() async -> OutputChunk? {
            let chunk = await base.next()
            if let chunk { reader.budget.taken(chunk.bytes.count) }
            return chunk
        }
    }

    /// Starts reading.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: chunks.makeAsyncIterator(), reader: reader) }

    /// Reads to the end, keeping at most `limit` bytes of stdout and stderr together; the rest
    /// is read and dropped, so the process is never blocked by a full pipe and memory stays
    /// bounded by `limit` whatever it writes.
    ///
    /// - Parameter limit: The most bytes kept; the first `limit` bytes in the order they came.
    /// - Returns: What was kept, and whether anything was dropped.
    public func collect(limit: Int) async -> CollectedOutput {
        var collected = CollectedOutput()
        var kept = 0
        for await chunk in self {
            let room = Swift.max(0, limit - kept)
            if chunk.bytes.count > room { collected.truncated = true }
            guard room > 0 else { continue }
            let bytes = chunk.bytes.prefix(room)
            kept += bytes.count
            switch chunk.stream {
            case .stdout: collected.standardOutput += bytes
            case .stderr: collected.standardError += bytes
            }
        }
        return collected
    }
}

/// The output of a process, read to its end with ``ContainerOutput/collect(limit:)``.
public struct CollectedOutput: Sendable, Hashable {
    /// What it wrote to stdout, up to the limit.
    public var standardOutput: [UInt8] = []
    /// What it wrote to stderr, up to the limit.
    public var standardError: [UInt8] = []
    /// Whether it wrote more than the limit, and the rest was dropped.
    public var truncated = false
}

extension Container {
    /// The output of the current (or last) run of a container whose
    /// ``ContainerConfiguration/output`` is ``OutputDestination/stream`` (`docker run`
    /// attached, without a log file).
    ///
    /// One reader takes it, once per run: read it to its end (it ends soon after the process
    /// exits), then ``wait(timeout:)`` for the status. It can be taken after the run ended,
    /// until the next start.
    ///
    /// - Returns: The output, stdout and stderr apart.
    /// - Throws: ``ContainerError/Code/invalidState`` when the output goes to the log or
    ///   nowhere, when the container never started, or when the output was taken already.
    public func output() throws(ContainerError) -> ContainerOutput {
        try live.withLock { live throws(ContainerError) -> ContainerOutput in
            guard live.record.configuration.output == .stream else {
                throw ContainerError(code: .invalidState, container: live.record.name,
                                     detail: "take the output of (its output goes to the \(live.record.configuration.output)):")
            }
            guard let output = live.output else {
                throw ContainerError(code: .invalidState, container: live.record.name,
                                     detail: "take the output of (not started, or taken already):")
            }
            live.output = nil
            return output
        }
    }
}
