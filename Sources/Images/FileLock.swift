import Glibc

/// An advisory `flock(2)` lock on a file, held from ``acquire`` until ``release()``.
///
/// `flock` locks belong to the open file description, so two `FileLock`s in one process
/// exclude each other exactly as two processes do, and a killed process's locks vanish with it.
final class FileLock {
    private var fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { release() }

    /// Opens (creating) `path` and locks it, waiting for other holders.
    ///
    /// Waiting polls with a non-blocking `flock` and `Task.sleep`, so a contended lock never
    /// parks a cooperative-pool thread.
    static func acquire(_ path: String, shared: Bool = false) async throws(ImageError) -> FileLock {
        let lock = try open(path)
        var delay: UInt64 = 1_000_000
        while true {
            if try lock.tryLock(shared: shared, path: path) { return lock }
            do {
                try await Task.sleep(nanoseconds: delay)
            } catch {
                throw ImageError(code: .io, detail: "wait for lock \(path): cancelled")
            }
            delay = min(delay * 2, 50_000_000)
        }
    }

    /// Opens (creating) `path` and locks it; a short blocking wait, for locks held only briefly
    /// (index.json updates).
    static func acquireBlocking(_ path: String, shared: Bool = false) throws(ImageError) -> FileLock {
        let lock = try open(path)
        while flock(lock.fd, shared ? LOCK_SH : LOCK_EX) != 0 {
            guard errno == EINTR else { throw ImageError.io("lock \(path)") }
        }
        return lock
    }

    /// Opens (creating) `path` and locks it if nobody else holds it.
    ///
    /// - Returns: The lock, or nil if another holder has it.
    static func tryAcquire(_ path: String, shared: Bool = false) throws(ImageError) -> FileLock? {
        let lock = try open(path)
        return try lock.tryLock(shared: shared, path: path) ? lock : nil
    }

    func release() {
        if fd >= 0 {
            close(fd)  // closing the last fd of the description drops the lock
            fd = -1
        }
    }

    private static func open(_ path: String) throws(ImageError) -> FileLock {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ImageError.io("open lock \(path)") }
        return FileLock(fd: fd)
    }

    private func tryLock(shared: Bool, path: String) throws(ImageError) -> Bool {
        while true {
            if flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0 { return true }
            switch errno {
            case EINTR: continue
            case EWOULDBLOCK: return false
            default: throw ImageError.io("lock \(path)")
            }
        }
    }
}
