import Synchronization

/// Back-pressure between the pipes a process writes and the one reader of what is read from
/// them: how many bytes were handed to the reader and not taken yet.
///
/// At ``limit`` each pipe's drain stops watching its pipe, so the process blocks on its next
/// write, as on any pipe, until the reader has taken half of them. A reader that goes away
/// closes the budget: the drains go on, and drop what they read.
///
/// Nothing here waits for a task to be scheduled: a drain pauses and resumes on the thread
/// that decides it (the I/O thread when it pauses, the reader's thread when ``taken(_:)`` or
/// ``close()`` resumes it). A reader that goes away therefore releases the process even when
/// every thread of the cooperative pool is blocked.
package final class ReadBudget: Sendable {
    /// The most bytes handed over and not taken before the drains stop.
    package static let limit = 1 << 20

    private struct State {
        var outstanding = 0
        var closed = false
        /// How to watch again each pipe whose drain stopped.
        var paused: [@Sendable () -> Void] = []
    }

    private let state = Mutex(State())

    package init() {}

    /// Records `bytes` read for the reader.
    ///
    /// - Returns: Whether to hand them over; `false` once the reader has gone (drop them).
    package func handOver(_ bytes: Int) -> Bool {
        state.withLock { state in
            guard !state.closed else { return false }
            state.outstanding += bytes
            return true
        }
    }

    /// Stops a drain if the reader is ``limit`` bytes behind: runs `pause` (under the budget's
    /// lock, so that a reader catching up meanwhile cannot resume the drain before it stopped)
    /// and keeps `resume` for when the reader has taken half of them, or has gone.
    ///
    /// - Returns: Whether the drain stopped.
    package func pauseIfFull(pause: () -> Void, resume: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { state in
            guard !state.closed, state.outstanding >= Self.limit else { return false }
            pause()
            state.paused.append(resume)
            return true
        }
    }

    /// Records that the reader took `bytes`; resumes the stopped drains once there is room.
    package func taken(_ bytes: Int) {
        let resume = state.withLock { state -> [@Sendable () -> Void] in
            state.outstanding = max(0, state.outstanding - bytes)
            guard state.outstanding <= Self.limit / 2 else { return [] }
            defer { state.paused = [] }
            return state.paused
        }
        resume.forEach { $0() }
    }

    /// The reader has gone, or wants nothing more: the drains never stop again and drop what
    /// they read from now on.
    package func close() {
        let resume = state.withLock { state -> [@Sendable () -> Void] in
            state.closed = true
            defer { state.paused = [] }
            return state.paused
        }
        resume.forEach { $0() }
    }
}
