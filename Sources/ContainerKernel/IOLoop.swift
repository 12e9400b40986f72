import CSyscalls
import Glibc
import Synchronization
import SystemSupport

/// One epoll thread for the whole process: it watches pidfds (process exit) and the host ends
/// of stdio pipes and terminals, so no cooperative-pool thread ever blocks on them.
package final class IOLoop: Sendable {
    package typealias Handler = @Sendable (_ events: UInt32) -> Void

    package static let shared = IOLoop()

    /// The event a reader registers for (`EPOLLIN`), for importers that do not see `<sys/epoll.h>`.
    package static let readable = UInt32(EPOLLIN.rawValue)

    private let epoll: Int32
    private let handlers = Mutex<(next: UInt64, table: [UInt64: Handler])>((1, [:]))

    private init() {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epoll >= 0, "epoll_create1 failed: the process is out of file descriptors")
        let thread = DedicatedThread(name: "berth-io") { [self] in
            var tokens = [UInt64](repeating: 0, count: 64)
            var events = [UInt32](repeating: 0, count: 64)
            while true {
                let count = ck_epoll_wait(epoll, &tokens, &events, 64, -1)
                guard count > 0 else { continue }
                for index in 0..<Int(count) {
                    let handler = handlers.withLock { $0.table[tokens[index]] }
                    handler?(events[index])
                }
            }
        }
        thread.start()
    }

    /// Starts watching `fd` and returns the token to unregister it with.
    ///
    /// The handler runs on the loop thread: it must be short and never block.
    package func register(_ fd: Int32, events: UInt32, handler: @escaping Handler) throws(KernelError) -> UInt64 {
        let token = handlers.withLock { state in
            let token = state.next
            state.next += 1
            state.table[token] = handler
            return token
        }
        do {
            _ = try KernelError.from(try sys("epoll_ctl add fd \(fd)") { ck_epoll_add(epoll, fd, events, token) })
        } catch {
            _ = handlers.withLock { $0.table.removeValue(forKey: token) }
            throw error
        }
        return token
    }

    /// Stops watching `fd`; a handler may still be running or about to run once more, so
    /// handlers tolerate being called after this.
    package func unregister(_ fd: Int32, token: UInt64) {
        _ = ck_epoll_del(epoll, fd)
        _ = handlers.withLock { $0.table.removeValue(forKey: token) }
    }

    /// Suspends until `fd` is writable (for non-blocking writes that met `EAGAIN`).
    package func waitWritable(_ fd: Int32) async throws(KernelError) {
        let result: Result<Void, KernelError> = await withCheckedContinuation { continuation in
            let fired = Mutex(false)
            let box = Mutex<UInt64?>(nil)
            do throws(KernelError) {
                let token = try register(fd, events: UInt32(EPOLLOUT.rawValue | EPOLLONESHOT.rawValue)) { [self] _ in
                    let first = fired.withLock { done in
                        defer { done = true }
                        return !done
                    }
                    guard first else { return }
                    if let token = box.withLock({ $0 }) { unregister(fd, token: token) }
                    continuation.resume(returning: .success(()))
                }
                box.withLock { $0 = token }
                // The event may have fired before the token was stored: clean up then.
                if fired.withLock({ $0 }) { unregister(fd, token: token) }
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        try result.get()
    }
}
