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
/// stdout and stderr, has closed them. Reading it costs no thread: the pipes are watched by
/// Berth's I/O thread. What is not read yet stays in memory; a reader that stops (or whose
/// task is cancelled) makes the rest be read and dropped.
public struct ContainerOutput: AsyncSequence, Sendable {
    public typealias Element = OutputChunk
    private let chunks: AsyncStream<OutputChunk>

    /// Merges the process's stdout and stderr (or its terminal).
    init(of process: ProcessHandle) {
        let (chunks, continuation) = AsyncStream<OutputChunk>.makeStream()
        self.chunks = chunks
        Task.detached {
            await withTaskGroup(of: Void.self) { group in
                let sources: [(ProcessOutput?, LogEntry.Stream)] = [
                    (process.standardOutput, .stdout), (process.standardError, .stderr), (process.terminal?.output, .stdout),
                ]
                for case let (source?, stream) in sources {
                    group.addTask {
                        for await bytes in source { continuation.yield(OutputChunk(stream: stream, bytes: bytes)) }
                    }
                }
            }
            continuation.finish()
        }
    }

    /// Starts reading.
    public func makeAsyncIterator() -> AsyncStream<OutputChunk>.AsyncIterator { chunks.makeAsyncIterator() }

    /// Reads to the end, keeping at most `limit` bytes of stdout and stderr together; the rest
    /// is read and dropped, so the process is never blocked by a full pipe and memory stays
    /// bounded by `limit` whatever it writes.
    ///
    /// - Parameter limit: The most bytes kept; the first `limit` bytes in the order they came.
    /// - Returns: What was kept, and whether anything was dropped.
    public func collect(limit: Int) async -> CollectedOutput {
        var collected = CollectedOutput()
        var kept = 0
        for await chunk in chunks {
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
