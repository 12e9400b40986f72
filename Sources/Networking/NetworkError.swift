import Glibc
public import SystemPackage
package import SystemSupport

/// The error every `Networking` operation throws.
///
/// It names what was being attempted and the object (network, device, port) in ``detail``, and
/// carries the kernel's error number when there is one.
///
/// ```swift
/// do { _ = try networks.create("backend") }
/// catch let error as NetworkError where error.code == .exists {
///     print(error)   // create network backend: a network with that name exists
/// }
/// ```
public struct NetworkError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Storage: UInt8 {
            case invalidArgument, notFound, exists, inUse, portInUse, netlink, io, unsupported, exhausted
        }
        let storage: Storage

        /// The request is malformed: a bad name, subnet, address or port specification.
        public static var invalidArgument: Code { Code(storage: .invalidArgument) }
        /// No network, sandbox or endpoint has that name or id.
        public static var notFound: Code { Code(storage: .notFound) }
        /// A network with that name, or a conflicting subnet, exists already.
        public static var exists: Code { Code(storage: .exists) }
        /// The network still has containers attached.
        public static var inUse: Code { Code(storage: .inUse) }
        /// The host port of a published port is taken.
        public static var portInUse: Code { Code(storage: .portInUse) }
        /// The kernel refused a netlink request; ``NetworkError/errno`` says why.
        public static var netlink: Code { Code(storage: .netlink) }
        /// A file or system call of the host failed (state files, namespace mounts, sockets).
        public static var io: Code { Code(storage: .io) }
        /// The request needs something Berth or this kernel does not provide.
        public static var unsupported: Code { Code(storage: .unsupported) }
        /// No free subnet is left in the pool, or no free address in a subnet.
        public static var exhausted: Code { Code(storage: .exhausted) }

        public var description: String { "\(storage)" }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The kernel's error number, when there is one.
    public var errno: Errno?
    /// What was being attempted, naming the object.
    public var detail: String

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: The kind of failure.
    ///   - errno: The kernel's error number, if any.
    ///   - detail: What was being attempted, naming the object.
    public init(code: Code, errno: Errno? = nil, detail: String) {
        self.code = code
        self.errno = errno
        self.detail = detail
    }

    /// A lower-case message a user can act on, such as
    /// `create bridge berth1a2b3c4d5e: operation not permitted`.
    public var description: String {
        guard let errno else { return detail }
        return detail + ": " + SystemError.message(for: errno)
    }

    /// The error for a failed call whose `errno` is still current.
    static func system(_ code: Code, _ detail: String, errno: Int32 = Glibc.errno) -> NetworkError {
        NetworkError(code: code, errno: Errno(rawValue: errno), detail: detail)
    }
}


extension NetworkError: SystemErrorConvertible {
    /// The error for a failed file or socket operation of the shared systems layer.
    package init(_ error: SystemError) {
        self.init(code: .io, errno: error.errno, detail: error.detail)
    }

    /// Evaluates `body`, a request to the kernel over netlink, turning a ``SystemError`` it
    /// throws into a ``Code/netlink`` error.
    @inline(__always)
    static func netlink<T>(_ body: @autoclosure () throws(SystemError) -> T) throws(NetworkError) -> T {
        do { return try body() } catch { throw NetworkError(code: .netlink, errno: error.errno, detail: error.detail) }
    }
}
