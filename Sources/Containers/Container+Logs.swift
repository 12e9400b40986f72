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
    /// Set on the entry that log rotation writes when it deletes the oldest file: how many
    /// bytes of older output were dropped (the entry's ``log`` says it in words). Stored as
    /// the json-file driver's `attrs` (`{"berth.dropped":"1048576"}`).
    public var dropped: Int?
}

extension LogEntry {
    private enum CodingKeys: String, CodingKey { case log, stream, time, attrs }
    private static let droppedAttribute = "berth.dropped"

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
        let attributes = try container.decodeIfPresent([String: String].self, forKey: .attrs)
        dropped = attributes?[Self.droppedAttribute].flatMap { Int($0) }
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
        if let dropped { try container.encode([Self.droppedAttribute: "\(dropped)"], forKey: .attrs) }
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

    /// Starts a new file by ck_log_rotate, the rule berth-supervisor follows too: when that
    /// deletes the oldest one, the new file begins with an entry that says how much output was
    /// dropped.
    private func rotate(_ state: inout (fd: Int32, size: Int)) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var size: Int64 = 0
        ck_log_rotate(path, Int32(limits.maximumFiles), &state.fd, &size, &now)
        state.size = Int(size)
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
    /// Writes the process's output into the log until it ends.
    func drain(_ output: ContainerOutput) -> Task<Void, Never> {
        let logs = self.logs
        return Task.detached {
            for await chunk in output { logs.append(chunk.bytes, stream: chunk.stream) }
        }
    }

    /// The container's log (`docker logs`).
    ///
    /// Following wakes when the container's directory changes (inotify): a new entry, a
    /// rotation, or the record of the run's end, whichever process writes them; it never polls.
    /// Each wake-up reads the log files again. Cancelling the task that iterates (or dropping
    /// the sequence) ends it.
    ///
    /// - Parameters:
    ///   - follow: Keep reading while the container runs (`-f`); the sequence ends when it exits.
    ///   - since: Only entries written at or after this time.
    ///   - tail: Only the last `tail` entries already written.
    /// - Returns: The entries, oldest first; after a rotation dropped output, an entry with
    ///   ``LogEntry/dropped`` says how much.
    public func logs(follow: Bool = false, since: Date? = nil, tail: Int? = nil) -> AsyncStream<LogEntry> {
        let logs = self.logs
        return AsyncStream { continuation in
            // Watching starts before the first read: no change after it is missed.
            let changes = follow ? DirectoryChanges(directory) : nil
            let task = Task.detached { [self] in
                var seen = logs.entries()
                var initial = seen.filter { entry in since.map { entry.time >= $0 } ?? true }
                if let tail { initial = Array(initial.suffix(tail)) }
                initial.forEach { continuation.yield($0) }
                if let changes {
                    var wakeUps = changes.wakeUps.makeAsyncIterator()
                    while !Task.isCancelled {
                        let running = state.status == .running || state.status == .paused
                        let now = logs.entries()
                        if now.count > seen.count || now.last != seen.last {
                            // Rotation only ever moves whole entries.
                            let fresh = now.count >= seen.count && now.prefix(seen.count).elementsEqual(seen)
                                ? Array(now.dropFirst(seen.count))
                                : now.filter { entry in !seen.contains(entry) }
                            fresh.forEach { continuation.yield($0) }
                            seen = now
                        } else if !running {
                            break
                        }
                        guard await wakeUps.next() != nil else { break }
                    }
                    changes.close()
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

/// Wake-ups when anything in a directory changes, through inotify on Berth's I/O thread.
final class DirectoryChanges: Sendable {
    /// One element per burst of changes (bursts that come while nobody reads are merged).
    let wakeUps: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation
    private let fd: Mutex<Int32>
    private let token: Mutex<UInt64?>

    init(_ directory: String) {
        (wakeUps, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        fd = Mutex(descriptor)
        token = Mutex(nil)
        let events = UInt32(IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_CLOSE_WRITE)
        guard descriptor >= 0, inotify_add_watch(descriptor, directory, events) >= 0 else {
            // Without a watch the follower would never wake: end it instead.
            continuation.finish()
            return
        }
        // The loop holds `self` until close() unregisters it.
        let registered = try? IOLoop.shared.register(descriptor, events: IOLoop.readable) { [self] _ in
            fd.withLock { fd in
                guard fd >= 0 else { return }
                var buffer = [UInt8](repeating: 0, count: 4096)
                while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
            }
            continuation.yield()
        }
        guard let registered else {
            continuation.finish()
            return
        }
        token.withLock { $0 = registered }
    }

    /// Stops watching; the wake-ups end. The follower calls it when it ends.
    func close() {
        let token = token.withLock { token in
            defer { token = nil }
            return token
        }
        fd.withLock { fd in
            guard fd >= 0 else { return }
            if let token { IOLoop.shared.unregister(fd, token: token) }
            Glibc.close(fd)
            fd = -1
        }
        continuation.finish()
    }
}
