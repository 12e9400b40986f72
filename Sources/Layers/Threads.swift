// Dedicated threads for blocking work (decompression, file writes, flock), which must not run
// on Swift's cooperative pool (STYLE.md, Concurrency), and the hand-off of downloaded chunks
// from async code to such a thread.

import Dispatch
import Glibc
import Synchronization

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// A started thread that can be joined once.
struct JoinableThread: ~Copyable {
    private let thread: pthread_t

    /// Starts `body` on a new thread.
    init(_ body: @escaping @Sendable () -> Void) throws(LayerError) {
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(box).release()
            throw LayerError(code: .io, errno: .init(rawValue: rc), detail: "start a worker thread")
        }
        self.thread = thread
    }

    /// Waits for the thread to finish.
    consuming func join() {
        pthread_join(thread, nil)
    }
}

/// Runs `body` on a new thread and resumes the caller with its result.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws(LayerError) -> T) async throws(LayerError) -> T {
    let result: Result<T, LayerError> = await withCheckedContinuation { continuation in
        do throws(LayerError) {
            let thread = try JoinableThread {
                do throws(LayerError) { continuation.resume(returning: .success(try body())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            // The thread resumes the continuation itself; it is detached rather than joined.
            _ = consume thread
        } catch {
            continuation.resume(returning: .failure(error))
        }
    }
    return try result.get()
}

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
