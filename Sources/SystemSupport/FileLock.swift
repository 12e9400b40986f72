// The one file lock: flock(2) on a lock file, so that every process embedding Berth on one root
// (and every thread of one process) excludes the others, and a killed holder's lock vanishes
// with it.

import Glibc
import Synchronization

/// An advisory `flock(2)` lock on a file, held until ``unlock()`` (or deinit).
///
/// flock(2) locks belong to an open file description, not to a process or a thread: a thread
/// that opens and locks a file it already holds waits for itself forever (issue 12: a snapshot
/// falling back to the copy driver hung that way). So a blocking lock records the thread
/// holding it, and taking a lock on the same file on that thread throws
/// ``SystemError/Kind/heldByThisThread`` instead of hanging. Other threads wait, as they should.
/// ``acquire(_:shared:)`` never blocks a thread (it polls), so its holder is a task, not a
/// thread, and it is not recorded.
package final class FileLock: Sendable {
    private struct Identity: Hashable { var device: UInt64; var inode: UInt64 }
    /// Which thread holds each file through a blocking lock (a file may be held shared by
    /// several threads at once).
    private static let holders = Mutex<[Identity: [pthread_t]]>([:])

    private let fd: Mutex<Int32>
    private let identity: Identity
    /// The thread recorded as holding it (blocking locks only).
    private let holder: pthread_t?

    private init(fd: Int32, identity: Identity, holder: pthread_t?) {
        self.fd = Mutex(fd)
        self.identity = identity
        self.holder = holder
    }

    /// Locks `path` (creating it, mode 0600), waiting for other holders.
    ///
    /// - Parameters:
    ///   - path: The lock file.
    ///   - shared: A shared (`LOCK_SH`) rather than an exclusive lock.
    /// - Throws: ``SystemError``: ``SystemError/Kind/heldByThisThread`` when the calling thread
    ///   already holds a lock on `path` (it would wait for itself), ``SystemError/Kind/failed``
    ///   when the file cannot be opened or locked.
    package convenience init(_ path: String, shared: Bool = false) throws(SystemError) {
        guard let (fd, identity) = try Self.take(path, shared: shared, wait: true, record: true) else {
            throw SystemError(errno: .wouldBlock, detail: "lock \"\(path)\"", path: path)  // not from a blocking flock
        }
        self.init(fd: fd, identity: identity, holder: pthread_self())
    }

    /// Locks `path` if no other holder has it.
    ///
    /// - Returns: The lock, or `nil` when another holder has it.
    /// - Throws: ``SystemError`` as ``init(_:shared:)``.
    package static func attempt(_ path: String, shared: Bool = false) throws(SystemError) -> FileLock? {
        guard let (fd, identity) = try take(path, shared: shared, wait: false, record: true) else { return nil }
        return FileLock(fd: fd, identity: identity, holder: pthread_self())
    }

    /// Locks `path`, waiting for other holders without blocking a thread: a contended lock is
    /// polled (`LOCK_NB`, then `Task.sleep` from 1 to 50 ms), so it never parks a
    /// cooperative-pool thread.
    ///
    /// - Throws: ``SystemError``: `ECANCELED` when the task is cancelled while it waits.
    package static func acquire(_ path: String, shared: Bool = false) async throws(SystemError) -> FileLock {
        var delay: UInt64 = 1_000_000
        while true {
            if let (fd, identity) = try take(path, shared: shared, wait: false, record: false) {
                return FileLock(fd: fd, identity: identity, holder: nil)
            }
            do {
                try await Task.sleep(nanoseconds: delay)
            } catch {
                throw SystemError(errno: .canceled, detail: "wait for the lock \"\(path)\"", path: path)
            }
            delay = min(delay * 2, 50_000_000)
        }
    }

    private static func take(_ path: String, shared: Bool, wait: Bool, record: Bool)
        throws(SystemError) -> (Int32, Identity)?
    {
        let fd = try sys("open the lock", path: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        do throws(SystemError) {
            var info = stat()
            _ = try sys("stat the lock", path: path) { fstat(fd, &info) }
            let identity = Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
            let me = pthread_self()
            if record, holders.withLock({ $0[identity]?.contains { pthread_equal($0, me) != 0 } ?? false }) {
                throw SystemError(.heldByThisThread, errno: .deadlock,
                                  detail: "lock \"\(path)\": already held by this thread", path: path)
            }
            while flock(fd, (shared ? LOCK_SH : LOCK_EX) | (wait ? 0 : LOCK_NB)) != 0 {
                if Glibc.errno == EINTR { continue }
                if Glibc.errno == EWOULDBLOCK {
                    close(fd)
                    return nil
                }
                throw SystemError.current("lock \"\(path)\"", path: path)
            }
            if record { holders.withLock { $0[identity, default: []].append(me) } }
            return (fd, identity)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Releases the lock; later calls do nothing.
    package func unlock() {
        fd.withLock { fd in
            guard fd >= 0 else { return }
            // Forgotten before the close: once closed, another thread may take it and record itself.
            if let holder {
                Self.holders.withLock { holders in
                    guard var threads = holders[identity],
                        let index = threads.firstIndex(where: { pthread_equal($0, holder) != 0 })
                    else { return }
                    threads.remove(at: index)
                    holders[identity] = threads.isEmpty ? nil : threads
                }
            }
            close(fd)  // closing the last fd of the description drops the lock
            fd = -1
        }
    }

    deinit { unlock() }
}
