import CSyscalls
import Glibc
import Synchronization

/// The host end of a pipe (or terminal) that a process writes to, read once, by one reader.
///
/// The first reader to ``OutputQueue/read(_:)`` it starts the drain on Berth's I/O thread,
/// which reads at the pace that reader takes what was read (``ReadBudget``). Until then the
/// process can write what the pipe holds (64 KiB on Linux) and then blocks, as on any pipe.
/// When the last owner lets go of a pipe that no reader started, it is drained and dropped,
/// so the process never blocks on a pipe that nobody can read any more.
package final class OutputPipe: Sendable {
    private let fd: Int32
    private let claimed = Mutex(false)

    /// Takes `fd`, which it closes at the end of the stream.
    init(owning fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        self.fd = fd
    }

    deinit {
        guard claim() else { return }
        let nobody = ReadBudget()
        nobody.close()
        Self.drain(fd, budget: nobody, deliver: { _ in }, end: {})
    }

    private func claim() -> Bool {
        claimed.withLock { claimed in
            defer { claimed = true }
            return !claimed
        }
    }

    /// Starts draining: each read is handed to `deliver` (on the I/O thread) unless `budget`
    /// is closed, and `end` is called once at the end of the stream.
    ///
    /// - Returns: `false`, doing nothing, when another reader started it already.
    fileprivate func start(
        budget: ReadBudget, deliver: @escaping @Sendable ([UInt8]) -> Void, end: @escaping @Sendable () -> Void
    ) -> Bool {
        guard claim() else { return false }
        Self.drain(fd, budget: budget, deliver: deliver, end: end)
        return true
    }

    /// Watches `fd` on the I/O loop and reads it while `budget` has room.
    ///
    /// Nothing captures the `OutputPipe`: the loop keeps the drain alive until the end.
    private static func drain(
        _ fd: Int32, budget: ReadBudget, deliver: @escaping @Sendable ([UInt8]) -> Void, end: @escaping @Sendable () -> Void
    ) {
        let events = UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue)
        // The registration on the loop (none while stopped), and whether the stream has ended.
        let state = Mutex<(token: UInt64?, ended: Bool)>((nil, false))
        // The read handler; dropped at the end, which breaks its cycle through `watch`.
        let handler = Mutex<IOLoop.Handler?>(nil)
        let finish: @Sendable () -> Void = {
            let first = state.withLock { state -> Bool in
                guard !state.ended else { return false }
                state.ended = true
                if let token = state.token { IOLoop.shared.unregister(fd, token: token) }
                state.token = nil
                return true
            }
            guard first else { return }
            handler.withLock { $0 = nil }
            close(fd)
            end()
        }
        // (Re)starts watching fd; a pipe that cannot be watched ends (its writer gets EPIPE)
        // rather than being left unread.
        let watch: @Sendable () -> Void = {
            guard let read = handler.withLock({ $0 }) else { return }
            let failed = state.withLock { state -> Bool in
                guard !state.ended, state.token == nil else { return false }
                do {
                    state.token = try IOLoop.shared.register(fd, events: events, handler: read)
                    return false
                } catch {
                    return true
                }
            }
            if failed { finish() }
        }
        let read: IOLoop.Handler = { _ in
            // Runs on the loop thread only, so reads never race each other; a stopped or ended
            // drain may still be called once more.
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let stopped = budget.pauseIfFull(pause: {
                    state.withLock { state in
                        if let token = state.token { IOLoop.shared.unregister(fd, token: token) }
                        state.token = nil
                    }
                }, resume: watch)
                guard !stopped, state.withLock({ $0.token != nil }) else { return }
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    if budget.handOver(n) { deliver(Array(buffer[0..<n])) }
                    continue
                }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
                // EOF, or EIO from a terminal whose other side closed: the stream ends.
                finish()
                return
            }
        }
        handler.withLock { $0 = read }
        watch()
    }
}

/// One reader's side of output drained from pipes: what was read, in the order it was read,
/// paced by a ``ReadBudget`` of what this reader has not taken yet.
///
/// The reader goes away when its task is cancelled in ``Iterator/next()``, when it drops its
/// iterator, or when no copy of the queue is left: the budget closes and the drains drop the
/// rest, on the thread that let go.
package final class OutputQueue<Element: Sendable>: Sendable {
    /// What the reader has not taken yet.
    package let budget = ReadBudget()
    private let size: @Sendable (Element) -> Int
    private let stream: AsyncStream<Element>
    private let continuation: AsyncStream<Element>.Continuation
    private let started = Mutex(false)

    /// An empty queue whose elements count `size(element)` bytes against the budget.
    package init(size: @escaping @Sendable (Element) -> Int) {
        self.size = size
        let (stream, continuation) = AsyncStream<Element>.makeStream()
        self.stream = stream
        self.continuation = continuation
        continuation.onTermination = { [budget] termination in
            if case .cancelled = termination { budget.close() }
        }
    }

    deinit { budget.close() }

    /// Starts draining `pipes` into the queue, each read made an element by its function; the
    /// queue ends when all of them have ended. Only the first call does anything; a pipe that
    /// another reader started counts as ended.
    package func read(_ pipes: [(OutputPipe, @Sendable ([UInt8]) -> Element)]) {
        guard started.withLock({ started in
            defer { started = true }
            return !started
        }) else { return }
        let open = Mutex(pipes.count + 1)
        let continuation = self.continuation
        let ended: @Sendable () -> Void = {
            if open.withLock({ open in
                open -= 1
                return open == 0
            }) { continuation.finish() }
        }
        for (pipe, element) in pipes {
            if !pipe.start(budget: budget, deliver: { continuation.yield(element($0)) }, end: ended) { ended() }
        }
        ended()
    }

    /// Reads the elements as they come.
    package func makeIterator() -> Iterator { Iterator(queue: self, base: stream.makeAsyncIterator(), presence: Presence(budget)) }

    /// Reads to the end, keeping at most `limit` bytes; once more came, the budget is closed
    /// and the rest is read and dropped on the I/O thread.
    ///
    /// - Parameters:
    ///   - limit: The most bytes kept.
    ///   - keep: Called for each element with how many of its bytes to keep (a prefix).
    /// - Returns: Whether bytes were dropped.
    package func collect(limit: Int, keep: (Element, Int) -> Void) async -> Bool {
        var kept = 0
        var truncated = false
        var elements = makeIterator()
        while let element = await elements.next() {
            guard !truncated else { continue }
            let count = size(element)
            let room = max(0, limit - kept)
            if room > 0 { keep(element, min(room, count)) }
            kept += min(room, count)
            if count > room {
                truncated = true
                budget.close()
            }
        }
        return truncated
    }

    /// Marks an iterator's life: when every copy of it is gone, its reader is.
    package final class Presence: Sendable {
        let budget: ReadBudget
        init(_ budget: ReadBudget) { self.budget = budget }
        deinit { budget.close() }
    }

    /// Takes the queue's elements one by one.
    package struct Iterator {
        let queue: OutputQueue
        var base: AsyncStream<Element>.AsyncIterator
        let presence: Presence

        /// The next element, or `nil` at the end (or when the calling task is cancelled).
        package mutating func next() async -> Element? {
            guard let element = await base.next() else { return nil }
            queue.budget.taken(queue.size(element))
            return element
        }
    }
}
