// The error scaffolding every target shares: one error for a failed system call or file
// operation, and the one helper (`sys`) that turns `-1` + `errno` into it. Each target maps a
// `SystemError` into its own public error type in exactly one initializer.

import Glibc
package import SystemPackage

/// A system call or file operation that failed: what was attempted, on which path, and why.
package struct SystemError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure, beyond `errno`, so that each target can pick its own error code.
    package enum Kind: Sendable, Hashable {
        /// The kernel refused the call; ``SystemError/errno`` says why.
        case failed
        /// Something other than the regular file that was checked is at the path (a symlink,
        /// FIFO, device or socket put there, or a different file).
        case unexpectedFile
        /// The file holds more bytes than the caller accepts.
        case tooLarge
        /// A removal met a mount point (a mount of another file system or a bind mount).
        case mountPoint
        /// The calling thread already holds the lock it asked for.
        case heldByThisThread
    }

    package var kind: Kind
    package var errno: Errno?
    /// What was being attempted, naming the object: `remove "/var/lib/berth/containers/3f2a"`.
    package var detail: String
    /// The path the operation worked on, when there is one.
    package var path: String?

    package init(_ kind: Kind = .failed, errno: Errno? = nil, detail: String, path: String? = nil) {
        self.kind = kind
        self.errno = errno
        self.detail = detail
        self.path = path
    }

    /// The error for a failed call whose `errno` is still current.
    package static func current(_ detail: String, path: String? = nil) -> SystemError {
        let code = Glibc.errno
        return SystemError(errno: Errno(rawValue: code), detail: detail, path: path)
    }

    /// Whether this is the given `errno`.
    package func `is`(_ code: Errno) -> Bool { errno == code }

    package var description: String {
        guard let errno else { return detail }
        return "\(detail): \(Self.message(for: errno))"
    }

    /// `strerror`'s words for `errno`, lower-case (`no such file or directory`), as every
    /// target's error messages use them.
    package static func message(for errno: Errno) -> String {
        let text = String(cString: strerror(errno.rawValue))
        guard let first = text.first else { return text }
        return first.lowercased() + text.dropFirst()
    }
}

/// Runs one system call, retrying on `EINTR` and turning `-1` into a ``SystemError``.
///
/// A bad file descriptor is a bookkeeping bug of ours: it trips an assertion in debug builds
/// and tests, and stays a typed error in release builds.
///
/// - Parameters:
///   - what: What was attempted, for the message: `open`, or a whole phrase when there is no
///     path (`create a pipe`).
///   - path: The path the call worked on, if any: the message is `what "path"`.
///   - retryOnInterrupt: Whether `EINTR` restarts the call.
///   - call: The call; it returns `-1` and sets `errno` on failure.
/// - Returns: The call's result.
@inline(__always)
package func sys<T: FixedWidthInteger>(
    _ what: @autoclosure () -> String, path: @autoclosure () -> String? = nil, retryOnInterrupt: Bool = true,
    _ call: () -> T
) throws(SystemError) -> T {
    while true {
        let rc = call()
        if rc != -1 { return rc }
        let err = Errno(rawValue: Glibc.errno)
        if err == .interrupted && retryOnInterrupt { continue }
        assert(err != .badFileDescriptor, "\(what()): fd bookkeeping bug")
        let path = path()
        throw SystemError(errno: err, detail: path.map { "\(what()) \"\($0)\"" } ?? what(), path: path)
    }
}

/// A target's public error type, made from a ``SystemError`` in exactly one initializer.
package protocol SystemErrorConvertible: Error {
    /// The target's error for `error`, keeping its `errno` and words.
    init(_ error: SystemError)
}

extension SystemErrorConvertible {
    /// Evaluates `body`, turning a ``SystemError`` it throws into this error type:
    /// `try LayerError.from(try removeTree(path))`.
    @inline(__always)
    package static func from<T: ~Copyable>(_ body: @autoclosure () throws(SystemError) -> T) throws(Self) -> T {
        do { return try body() } catch { throw Self(error) }
    }
}
