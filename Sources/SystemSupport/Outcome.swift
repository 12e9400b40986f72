// A value that arrives once (a process's exit status, the end of a container's run) and any
// number of tasks that wait for it, each with its own deadline and its own cancellation.

import Synchronization

/// A value set once, and the tasks waiting for it.
///
/// Waiting suspends the task (no thread is blocked); a waiter that gives up (deadline or
/// cancellation) is removed at once, so nothing waits on after it has returned.
package final class Outcome<Value: Sendable>: Sendable {
    /// Why a wait returned without the value.
    package enum GaveUp: Error, Sendable { case deadline, cancelled }

    private struct State {
        var value: Value?
        var waiters: [UInt64: CheckedContinuation<Result<Value, GaveUp>, Never>] = [:]
        /// Waiters that gave up before they were registered.
        var abandoned: [UInt64: GaveUp] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    package init() {}

    /// The value, or `nil` until it is set.
    package var value: Value? { state.withLock { $0.value } }

    /// Sets the value (only the first call counts) and resumes every waiter with it.
    package func fulfil(_ value: Value) {
        let waiters = state.withLock { state -> [CheckedContinuation<Result<Value, GaveUp>, Never>] in
            guard state.value == nil else { return [] }
            state.value = value
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        waiters.forEach { $0.resume(returning: .success(value)) }
    }

    /// Waits for the value, ignoring cancellation: for the owner's own bookkeeping, which must
    /// see the end whatever happens to the task that started it.
    package func uncancellableValue() async -> Value {
        if case .success(let value) = await wait(timeout: nil, cancellable: false) { return value }
        preconditionFailure("an uncancellable wait without a deadline gave up")
    }

    /// Waits for the value until `timeout` has passed (never, when `nil`) or the calling task
    /// is cancelled.
    ///
    /// - Returns: The value, or why the wait gave up.
    package func wait(timeout: Duration?) async -> Result<Value, GaveUp> {
        await wait(timeout: timeout, cancellable: true)
    }

    private func wait(timeout: Duration?, cancellable: Bool) async -> Result<Value, GaveUp> {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        let timer = timeout.map { timeout in
            Task { [self] in
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { giveUp(id, .deadline) }
            }
        }
        defer { timer?.cancel() }
        let wait = {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<Value, GaveUp>, Never>) in
                let now = self.state.withLock { state -> Result<Value, GaveUp>? in
                    if let value = state.value { return .success(value) }
                    if let reason = state.abandoned.removeValue(forKey: id) { return .failure(reason) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        }
        guard cancellable else { return await wait() }
        return await withTaskCancellationHandler(operation: wait, onCancel: { giveUp(id, .cancelled) })
    }

    private func giveUp(_ id: UInt64, _ reason: GaveUp) {
        let waiter = state.withLock { state -> CheckedContinuation<Result<Value, GaveUp>, Never>? in
            if state.value != nil { return nil }
            if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
            state.abandoned[id] = reason
            return nil
        }
        waiter?.resume(returning: .failure(reason))
    }
}
