import Synchronization

/// Back-pressure between a producer of output chunks and their reader: how many bytes were
/// handed over and not taken yet. Past ``limit`` the producer stops (a pipe is left unread, so
/// the process that writes it blocks, as with any pipe), until the reader has taken half of
/// them. A reader that goes away closes the budget: the producer goes on, and what it hands
/// over is dropped.
///
/// A producer on the I/O loop uses ``handedOver(_:)`` and ``pauseIfFull(pause:resume:)``; a
/// producer task uses ``reserve(_:)``; the reader calls ``taken(_:)`` for each chunk it gets.
package final class ReadBudget: Sendable {
    /// The most bytes handed over and not taken before the producer stops.
    package static let limit = 1 << 20

    private struct State {
        var outstanding = 0
        var closed = false
        var resume: (@Sendable () -> Void)?
        var waiters: [(bytes: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())

    package init() {}

    /// Records `bytes` handed over by a producer that does not wait.
    package func handedOver(_ bytes: Int) {
        state.withLock { if !$0.closed { $0.outstanding += bytes } }
    }

    /// Stops the producer if the reader is ``limit`` bytes behind: runs `pause` (under the
    /// budget's lock, so that a reader catching up meanwhile cannot resume it first) and keeps
    /// `resume` to run once the reader has taken half of them, or has gone.
    ///
    /// - Returns: Whether the producer was paused.
    package func pauseIfFull(pause: () -> Void, resume: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { state in
            guard !state.closed, state.outstanding >= Self.limit else { return false }
            pause()
            state.resume = resume
            return true
        }
    }

    /// Waits until `bytes` more fit (a chunk larger than the limit fits into an empty budget),
    /// then records them; at once when the reader has gone.
    package func reserve(_ bytes: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                guard !state.closed else { return true }
                guard state.outstanding == 0 || state.outstanding + bytes <= Self.limit else {
                    state.waiters.append((bytes, continuation))
                    return false
                }
                state.outstanding += bytes
                return true
            }
            if ready { continuation.resume() }
        }
    }

    /// Records that the reader took `bytes`, and lets a stopped producer go on when there is
    /// room again.
    package func taken(_ bytes: Int) {
        let (resume, ready) = state.withLock { state -> ((@Sendable () -> Void)?, [CheckedContinuation<Void, Never>]) in
            state.outstanding = max(0, state.outstanding - bytes)
            var ready: [CheckedContinuation<Void, Never>] = []
            while let first = state.waiters.first, state.outstanding == 0 || state.outstanding + first.bytes <= Self.limit {
                state.outstanding += first.bytes
                ready.append(state.waiters.removeFirst().continuation)
            }
            guard state.resume != nil, state.outstanding <= Self.limit / 2 else { return (nil, ready) }
            defer { state.resume = nil }
            return (state.resume, ready)
        }
        ready.forEach { $0.resume() }
        resume?()
    }

    /// The reader has gone: the producer is never stopped again.
    package func close() {
        let (resume, waiters) = state.withLock { state in
            state.closed = true
            defer {
                state.resume = nil
                state.waiters = []
            }
            return (state.resume, state.waiters.map(\.continuation))
        }
        waiters.forEach { $0.resume() }
        resume?()
    }
}

