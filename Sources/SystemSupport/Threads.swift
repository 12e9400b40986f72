// Threads for blocking work, which must not run on Swift's cooperative pool (STYLE.md,
// Concurrency): one bounded pool for blocking calls, and the two kinds of threads of our own
// (a named long-lived one, and a partner stage that is joined).

import CSyscalls
import Dispatch
import Glibc
import Synchronization

/// A bounded pool of threads for blocking calls (a layer unpack, whole-file hashing, archive
/// copies): at most ``width`` run at once, the rest wait in order. Threads start when work
/// arrives and stay for the next call.
package final class BlockingPool: Sendable {
    /// The process's pool for blocking work: twice the processors, at least four (the calls
    /// mostly wait for the disk, not the processor).
    package static let shared = BlockingPool(width: max(4, 2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))), name: "berth-blocking")

    /// The most calls that run at once.
    package let width: Int
    private let name: String
    private let state = Mutex<(jobs: [@Sendable () -> Void], threads: Int, busy: Int)>(([], 0, 0))
    private let queued = DispatchSemaphore(value: 0)

    /// Creates a pool of at most `width` threads called `name`.
    package init(width: Int, name: String) {
        precondition(width > 0, "a pool needs a thread")
        self.width = width
        self.name = name
    }

    /// Runs `body` on a thread of the pool and resumes the caller with its result.
    ///
    /// - Throws: What `body` throws.
    package func run<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { continuation in
            submit { continuation.resume(returning: Result { () throws(E) -> T in try body() }) }
        }
        return try result.get()
    }

    private func submit(_ job: @escaping @Sendable () -> Void) {
        let grow = state.withLock { state -> Bool in
            state.jobs.append(job)
            // A new thread only when every thread is busy: an idle one takes the job otherwise.
            guard state.threads < width, state.busy + state.jobs.count > state.threads else { return false }
            state.threads += 1
            return true
        }
        queued.signal()
        if grow { DedicatedThread(name: name) { [self] in work() }.start() }
    }

    private func work() {
        while true {
            queued.wait()
            let job = state.withLock { state -> (@Sendable () -> Void)? in
                guard !state.jobs.isEmpty else { return nil }
                state.busy += 1
                return state.jobs.removeFirst()
            }
            guard let job else { continue }
            job()
            state.withLock { $0.busy -= 1 }
        }
    }
}

/// A thread of its own, outside the cooperative pool, running one closure to its end (the
/// epoll loop, the spawner, a pool worker). It is detached: nothing joins it.
package final class DedicatedThread: @unchecked Sendable {
    private let body: @Sendable () -> Void
    private let name: String

    /// A thread called `name` (at most 15 bytes show in `ps`) that will run `body`.
    package init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }

    /// Starts the thread. Failing to start one is fatal: the process is out of threads.
    package func start() {
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            let me = Unmanaged<DedicatedThread>.fromOpaque(raw).takeRetainedValue()
            _ = me.name.withCString { ck_set_thread_name($0) }
            me.body()
            return nil
        }, box.toOpaque())
        precondition(rc == 0, "pthread_create failed (\(rc)): cannot start Berth's \(name) thread")
        pthread_detach(thread)
    }
}

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// A started thread that is joined once: the partner stage of a pipeline whose other stage
/// runs on the calling thread (a decompressor feeding a pipe that the caller unpacks from).
/// It must not come from the pool: a pool thread waiting for a partner queued behind it
/// would wait for ever.
package struct JoinableThread: ~Copyable {
    private let thread: pthread_t

    /// Starts `body` on a new thread.
    ///
    /// - Throws: ``SystemError`` when no thread can be started.
    package init(_ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(box).release()
            throw SystemError(errno: .init(rawValue: rc), detail: "start a worker thread")
        }
        self.thread = thread
    }

    /// Waits for the thread to finish.
    package consuming func join() {
        pthread_join(thread, nil)
    }
}
