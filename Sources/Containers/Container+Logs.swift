import CSyscalls
import ContainerKernel
public import FoundationEssentials
import Glibc
import Synchronization
import SystemSupport

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

extension LogEntry {
    private enum CodingKeys: String, CodingKey { case log, stream, time }

    /// Decodes an entry of the log file; `time` is RFC 3339 in UTC, with or without a fraction
    /// of a second (`2026-12-03T07:21:19.123456789Z`).
    ///
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError` when a field is missing or the time is not RFC 3339 in UTC.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        log = try container.decode(String.self, forKey: .log)
        stream = try container.decode(Stream.self, forKey: .stream)
        let text = try container.decode(String.self, forKey: .time)
        guard let time = Self.parseTime(text) else {
            throw DecodingError.dataCorruptedError(forKey: .time, in: container, debugDescription: "not an RFC 3339 UTC time: \(text)")
        }
        self.time = time
    }

    /// Encodes the entry as the log file holds it, `time` as RFC 3339 in UTC with nanoseconds.
    ///
    /// - Parameter encoder: The encoder to write to.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(log, forKey: .log)
        try container.encode(stream, forKey: .stream)
        let seconds = time.timeIntervalSince1970.rounded(.down)
        var now = timespec(tv_sec: Int(seconds), tv_nsec: Int(((time.timeIntervalSince1970 - seconds) * 1e9).rounded()))
        if now.tv_nsec >= 1_000_000_000 { (now.tv_sec, now.tv_nsec) = (now.tv_sec + 1, now.tv_nsec - 1_000_000_000) }
        var text = [CChar](repeating: 0, count: 32)
        let length = ck_log_time(&text, &now)
        try container.encode(String(decoding: text[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self), forKey: .time)
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, as ck_log_time writes it (and as older logs have it,
    /// without the fraction).
    static func parseTime(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int32? {
            guard range.upperBound <= bytes.count else { return nil }
            var value: Int32 = 0
            for byte in bytes[range] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int32(byte - 0x30)
            }
            return value
        }
        guard bytes.count >= 20, bytes[4] == 0x2D, bytes[7] == 0x2D, bytes[10] == 0x54, bytes[13] == 0x3A,
            bytes[16] == 0x3A, bytes.last == 0x5A, let year = number(0..<4), let month = number(5..<7),
            let day = number(8..<10), let hour = number(11..<13), let minute = number(14..<16),
            let second = number(17..<19)
        else { return nil }
        var fraction = 0.0
        if bytes.count > 20 {
            guard bytes[19] == 0x2E, bytes.count > 21, bytes.count <= 31, number(20..<(bytes.count - 1)) != nil else { return nil }
            fraction = Double(String(decoding: bytes[19..<(bytes.count - 1)], as: UTF8.self)) ?? 0
        }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        return Date(timeIntervalSince1970: Double(timegm(&parts)) + fraction)
    }
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

    /// Appends what the container wrote: one entry per line, as the json-file driver does (a
    /// partial line is its own entry), encoded by ck_log_entry.h as berth-supervisor encodes
    /// a detached container's, and rotated by the same rule.
    func append(_ bytes: [UInt8], stream: LogEntry.Stream) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var entry = [CChar](repeating: 0, count: ck_log_entry_capacity(bytes.count))
        state.withLock { state in
            bytes.withUnsafeBufferPointer { input in
                var start = 0
                while start < input.count {
                    var used = 0
                    let length = entry.withUnsafeMutableBufferPointer { out in
                        ck_log_entry(out.baseAddress, input.baseAddress! + start, input.count - start, &used,
                                     stream.rawValue, &now)
                    }
                    if state.fd < 0 || state.size + length > limits.maximumSize { rotate(&state) }
                    if state.fd >= 0 {
                        _ = entry.withUnsafeBytes { try? writeAll(state.fd, UnsafeRawBufferPointer(rebasing: $0[..<length]), path: path) }
                        state.size += length
                    }
                    start += used
                }
            }
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
            guard let bytes = try? readWholeFile(file) else { continue }
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
