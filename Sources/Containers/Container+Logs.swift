import ContainerKernel
public import FoundationEssentials
import Glibc
import Synchronization

/// One line (or chunk) a container wrote, as Docker's `json-file` log driver stores it.
public struct LogEntry: Sendable, Hashable, Codable {
    /// Which stream.
    public enum Stream: String, Sendable, Hashable, Codable { case stdout, stderr }
    /// The text, including its trailing newline when it had one.
    public var log: String
    /// Which stream it was written to.
    public var stream: Stream
    /// When Berth read it.
    public var time: Date
}

/// A container's log: JSON lines in `container.log`, rotated to `container.log.1`, `.2`, …
/// when it reaches the size limit. Written by the owner, readable by any process.
final class LogFile: Sendable {
    let path: String
    let limits: LogLimits
    private let state = Mutex<(fd: Int32, size: Int)>((-1, 0))

    init(path: String, limits: LogLimits) {
        self.path = path
        self.limits = limits
    }

    deinit { state.withLock { if $0.fd >= 0 { close($0.fd) } } }

    func append(_ bytes: [UInt8], stream: LogEntry.Stream) {
        // One entry per line, as the json-file driver does; a partial line is its own entry.
        var lines: [[UInt8]] = []
        var start = 0
        for (index, byte) in bytes.enumerated() where byte == 0x0A {
            lines.append(Array(bytes[start...index]))
            start = index + 1
        }
        if start < bytes.count { lines.append(Array(bytes[start...])) }
        let now = Date()
        var encoded: [UInt8] = []
        for line in lines {
            let entry = LogEntry(log: String(decoding: line, as: UTF8.self), stream: stream, time: now)
            guard let json = try? jsonEncoder.encode(entry) else { continue }
            encoded += json
            encoded.append(0x0A)
        }
        state.withLock { state in
            if state.fd < 0 || state.size + encoded.count > limits.maximumSize { rotate(&state) }
            guard state.fd >= 0 else { return }
            _ = encoded.withUnsafeBytes { write(state.fd, $0.baseAddress, $0.count) }
            state.size += encoded.count
        }
    }

    private func rotate(_ state: inout (fd: Int32, size: Int)) {
        if state.fd >= 0 {
            close(state.fd)
            if limits.maximumFiles > 1 {
                for index in stride(from: limits.maximumFiles - 1, to: 0, by: -1) {
                    rename(index == 1 ? path : "\(path).\(index - 1)", "\(path).\(index)")
                }
            } else {
                unlink(path)
            }
        }
        state.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        var st = stat()
        state.size = state.fd >= 0 && fstat(state.fd, &st) == 0 ? Int(st.st_size) : 0
    }

    /// Every entry on disk, oldest first.
    func entries() -> [LogEntry] {
        var all: [LogEntry] = []
        for index in stride(from: limits.maximumFiles - 1, through: 0, by: -1) {
            let file = index == 0 ? path : "\(path).\(index)"
            guard let bytes = try? readBytes(file) else { continue }
            all += Self.decode(bytes[...])
        }
        return all
    }

    static func decode(_ bytes: ArraySlice<UInt8>) -> [LogEntry] {
        bytes.split(separator: 0x0A).compactMap { try? jsonDecoder.decode(LogEntry.self, from: Data($0)) }
    }
}

extension Container {
    /// Reads the process's stdout and stderr into the log until both end.
    func drainOutput(of process: ProcessHandle) -> Task<Void, Never> {
        let logs = self.logs
        return Task.detached {
            await withTaskGroup(of: Void.self) { group in
                if let output = process.standardOutput {
                    group.addTask { for await chunk in output { logs.append(chunk, stream: .stdout) } }
                }
                if let output = process.standardError {
                    group.addTask { for await chunk in output { logs.append(chunk, stream: .stderr) } }
                }
                if let terminal = process.terminal {
                    group.addTask { for await chunk in terminal.output { logs.append(chunk, stream: .stdout) } }
                }
            }
        }
    }

    /// The container's log (`docker logs`).
    ///
    /// - Parameters:
    ///   - follow: Keep reading while the container runs (`-f`); the sequence ends when it exits.
    ///   - since: Only entries written at or after this time.
    ///   - tail: Only the last `tail` entries already written.
    /// - Returns: The entries, oldest first.
    public func logs(follow: Bool = false, since: Date? = nil, tail: Int? = nil) -> AsyncStream<LogEntry> {
        let logs = self.logs
        return AsyncStream { continuation in
            let task = Task.detached { [self] in
                var seen = logs.entries()
                var initial = seen.filter { entry in since.map { entry.time >= $0 } ?? true }
                if let tail { initial = Array(initial.suffix(tail)) }
                initial.forEach { continuation.yield($0) }
                // Following polls the file: cheap, works for readers in other processes, and
                // rotation only ever moves whole entries.
                while follow && !Task.isCancelled {
                    let running = state.status == .running || state.status == .paused
                    try? await Task.sleep(for: .milliseconds(50))
                    let now = logs.entries()
                    if now.count > seen.count || now.last != seen.last {
                        let fresh = now.count >= seen.count && now.prefix(seen.count).elementsEqual(seen)
                            ? Array(now.dropFirst(seen.count))
                            : now.filter { entry in !seen.contains(entry) }
                        fresh.forEach { continuation.yield($0) }
                        seen = now
                    } else if !running {
                        break
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
