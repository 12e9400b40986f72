// The hand-off of downloaded chunks from async code to a blocking consumer thread (threads
// themselves are SystemSupport's).

import Dispatch
import Glibc
import Synchronization

/// A bounded queue of byte chunks from an async producer (a download) to a blocking consumer
/// thread (the decompressor). The producer is suspended, not blocked, while the queue is full.
final class ChunkChannel: Sendable {
    private struct State {
        var chunks: [[UInt8]] = []
        var finished = false
        var cancelled = false
        var waitingProducer: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())
    private let available = DispatchSemaphore(value: 0)
    /// Chunks held before the producer waits: registry clients deliver 16–64 KiB chunks, so
    /// this is a few MiB of slack between download and decompression.
    private let capacity = 64

    /// Queues a chunk; waits while the queue is full. Dropped after ``cancel()``.
    func send(_ chunk: [UInt8]) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.cancelled { return true }
                state.chunks.append(chunk)
                if state.chunks.count < capacity { return true }
                state.waitingProducer = continuation
                return false
            }
            available.signal()
            if resumeNow { continuation.resume() }
        }
    }

    /// Marks the end of the stream.
    func finish() {
        state.withLock { $0.finished = true }
        available.signal()
    }

    /// Stops accepting chunks and releases a waiting producer (the consumer failed).
    func cancel() {
        let waiting = state.withLock { state in
            state.cancelled = true
            state.chunks = []
            defer { state.waitingProducer = nil }
            return state.waitingProducer
        }
        waiting?.resume()
    }

    /// The next chunk, blocking until one arrives; `nil` at the end of the stream.
    func receive() -> [UInt8]? {
        while true {
            let (chunk, done, producer) = state.withLock { state -> ([UInt8]?, Bool, CheckedContinuation<Void, Never>?) in
                if !state.chunks.isEmpty {
                    let chunk = state.chunks.removeFirst()
                    defer { state.waitingProducer = nil }
                    return (chunk, false, state.waitingProducer)
                }
                return (nil, state.finished || state.cancelled, nil)
            }
            producer?.resume()
            if let chunk { return chunk }
            if done { return nil }
            available.wait()
        }
    }
}
