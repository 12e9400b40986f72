public import ContainerKernel

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
/// stdout and stderr, has closed them.
///
/// Reading costs no thread: Berth's I/O thread reads the pipes as fast as the reader takes
/// the chunks. When the reader is 1 MiB behind, the pipes are left unread until it catches
/// up, so the process blocks on its next write, as on any pipe, and memory stays bounded
/// whatever it writes. A reader that stops for good (its task cancelled while it waits for a
/// chunk, or the sequence and its iterators dropped) makes the rest be read and dropped at
/// once, on the thread that let go, so the process never blocks on it.
public struct ContainerOutput: AsyncSequence, Sendable {
    public typealias Element = OutputChunk
    private let queue = OutputQueue<OutputChunk>(size: { $0.bytes.count })

    /// Reads the process's stdout and stderr (or its terminal) from now on; they are this
    /// sequence's alone.
    init(of process: ProcessHandle) {
        let sources: [(ProcessOutput?, LogEntry.Stream)] = [
            (process.standardOutput, .stdout), (process.standardError, .stderr), (process.terminal?.output, .stdout),
        ]
        queue.read(sources.compactMap { source, stream -> (OutputPipe, @Sendable ([UInt8]) -> OutputChunk)? in
            guard let source else { return nil }
            return (source.pipe, { bytes in OutputChunk(stream: stream, bytes: bytes) })
        })
    }

    /// Reads the chunks as they come.
    public struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate var base: OutputQueue<OutputChunk>.Iterator

        /// The next chunk, or `nil` at the end (or when the calling task is cancelled).
        public mutating func next() async -> OutputChunk? { await base.next() }
    }

    /// Starts reading.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: queue.makeIterator()) }

    /// Reads to the end, keeping at most `limit` bytes of stdout and stderr together; the rest
    /// is read and dropped, so the process is never blocked by a full pipe and memory stays
    /// bounded by `limit` whatever it writes.
    ///
    /// - Parameter limit: The most bytes kept; the first `limit` bytes in the order they came.
    /// - Returns: What was kept, and whether anything was dropped.
    public func collect(limit: Int) async -> CollectedOutput {
        var collected = CollectedOutput()
        let truncated = await queue.collect(limit: limit) { chunk, count in
            switch chunk.stream {
            case .stdout: collected.standardOutput += chunk.bytes.prefix(count)
            case .stderr: collected.standardError += chunk.bytes.prefix(count)
            }
        }
        collected.truncated = truncated
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
    /// until the next start. Its reading is started with the run: until the reader catches
    /// up, the process runs at most 1 MiB (plus what its pipes hold) ahead of it and then
    /// blocks on its next write. Taking it costs nothing; dropping it (or cancelling the task
    /// that reads it) makes the rest be read and dropped, so the process runs on.
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
