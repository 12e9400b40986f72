// The one file lock: a thread that asks for a lock it holds gets an error instead of waiting for
// itself; other threads and tasks wait.

import Glibc
@testable import SystemSupport
import Testing
import TestSupport

@Suite(.serialized)
struct FileLockTests {
    @Test func aLockThisThreadHoldsThrowsInsteadOfWaiting() throws {
        let directory = try TemporaryDirectory(prefix: "file-lock")
        let path = directory.path + "/lock"
        let lock = try FileLock(path)
        do {
            _ = try FileLock(path)
            Issue.record("took a lock this thread already holds")
        } catch {
            #expect(error.kind == .heldByThisThread && error.errno == .deadlock)
        }
        #expect(throws: SystemError.self) { _ = try FileLock.attempt(path) }
        lock.unlock()
        let again = try FileLock(path)  // released: taken at once
        again.unlock()
        try directory.remove()
    }

    @Test func anotherHolderMakesOthersWait() async throws {
        let directory = try TemporaryDirectory(prefix: "file-lock")
        let path = directory.path + "/lock"
        let lock = try FileLock(path)
        // Another thread is refused (attempt) while it is held, and gets it once released.
        let refused = try await onOtherThread { try FileLock.attempt(path) == nil }
        #expect(refused)
        let waiter = Task { try await FileLock.acquire(path) }
        try await Task.sleep(for: .milliseconds(100))
        lock.unlock()
        let taken = try await waiter.value
        taken.unlock()
        // Shared holders do not exclude each other.
        let first = try FileLock(path, shared: true)
        let second = try await FileLock.acquire(path, shared: true)
        #expect(try await onOtherThread { try FileLock.attempt(path) == nil }, "an exclusive lock waits for shared holders")
        first.unlock()
        second.unlock()
        try directory.remove()
    }

    /// Runs `body` on a new thread and waits for it.
    private func onOtherThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let box = Unmanaged.passRetained(Box { continuation.resume(with: Result { try body() }) })
            var thread = pthread_t()
            pthread_create(&thread, nil, { raw in
                Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().run()
                return nil
            }, box.toOpaque())
            pthread_detach(thread)
        }
    }
}

private final class Box {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
