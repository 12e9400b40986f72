import Glibc
package import SystemSupport
public import SystemPackage

/// The error every `Images` operation throws.
///
/// It names what failed: the image ``reference``, the ``registry``, the blob ``digest``, and the
/// kernel's error number when there is one.
///
/// ```swift
/// do { _ = try ImageReference(parsing: "Busybox") }
/// catch let error where error.code == .invalidReference {
///     print(error)   // reference "Busybox": repository name must be lowercase
/// }
/// ```
public struct ImageError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Storage: UInt8 {
            case invalidReference, invalidDigest, digestMismatch, sizeMismatch, notFound, inUse, io
            case invalidContent, unsupported, unauthorized, denied, registry, network, platformNotFound
            case invalidArgument
        }
        let storage: Storage

        /// A reference does not follow the distribution reference grammar.
        public static var invalidReference: Code { Code(storage: .invalidReference) }
        /// A digest string is malformed or uses an unknown algorithm.
        public static var invalidDigest: Code { Code(storage: .invalidDigest) }
        /// Downloaded or imported bytes do not hash to the digest they were announced with.
        public static var digestMismatch: Code { Code(storage: .digestMismatch) }
        /// Downloaded or imported bytes are longer or shorter than their descriptor says.
        public static var sizeMismatch: Code { Code(storage: .sizeMismatch) }
        /// The image, tag, manifest or blob does not exist (locally or in the registry).
        public static var notFound: Code { Code(storage: .notFound) }
        /// The image is used by a container and removal was not forced.
        public static var inUse: Code { Code(storage: .inUse) }
        /// A file system operation failed; ``ImageError/errno`` says why.
        public static var io: Code { Code(storage: .io) }
        /// A manifest, index, config or archive is not valid JSON of the expected shape.
        public static var invalidContent: Code { Code(storage: .invalidContent) }
        /// The content uses a media type, algorithm or feature Berth does not handle.
        public static var unsupported: Code { Code(storage: .unsupported) }
        /// The registry rejected the credentials, or asked for credentials and none were found.
        public static var unauthorized: Code { Code(storage: .unauthorized) }
        /// The credentials were accepted but do not grant the requested access.
        public static var denied: Code { Code(storage: .denied) }
        /// The registry answered with an unexpected status.
        public static var registry: Code { Code(storage: .registry) }
        /// The connection to the registry failed (after retries).
        public static var network: Code { Code(storage: .network) }
        /// An index holds no manifest for the requested platform.
        public static var platformNotFound: Code { Code(storage: .platformNotFound) }
        /// The request itself is malformed (a bad option, an insecure registry that is not allowed).
        public static var invalidArgument: Code { Code(storage: .invalidArgument) }

        /// The code's name, such as `digestMismatch`.
        public var description: String { "\(storage)" }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The image reference being worked on, when there is one.
    public var reference: String?
    /// The registry host being talked to, when there is one.
    public var registry: String?
    /// The blob or manifest digest involved, when there is one.
    public var digest: String?
    /// The kernel's error number, when there is one.
    public var errno: Errno?
    /// What was being attempted or what is wrong, in lower case.
    public var detail: String

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: The kind of failure.
    ///   - reference: The image reference being worked on, if any.
    ///   - registry: The registry host, if any.
    ///   - digest: The digest involved, if any.
    ///   - errno: The kernel's error number, if any.
    ///   - detail: What was being attempted or what is wrong.
    public init(
        code: Code, reference: String? = nil, registry: String? = nil, digest: String? = nil,
        errno: Errno? = nil, detail: String
    ) {
        self.code = code
        self.reference = reference
        self.registry = registry
        self.digest = digest
        self.errno = errno
        self.detail = detail
    }

    /// A lower-case message naming the reference, registry and digest, such as
    /// `registry 127.0.0.1:5000: blob sha256:ab…: content hashes to sha256:cd…`.
    public var description: String {
        var parts: [String] = []
        if let reference { parts.append("reference \"\(reference)\"") }
        if let registry { parts.append("registry \(registry)") }
        if let digest { parts.append("blob \(digest)") }
        parts.append(detail)
        if let errno { parts.append(SystemError.message(for: errno)) }
        return parts.joined(separator: ": ")
    }

    /// An ``Code/io`` error for the current `errno`.
    static func io(_ detail: String, errno code: Int32 = Glibc.errno) -> ImageError {
        ImageError(code: .io, errno: Errno(rawValue: code), detail: detail)
    }
}

extension FileLock {
    /// ``acquire(_:shared:)`` with the wait's failure as an ``ImageError``.
    static func acquiring(_ path: String, shared: Bool = false) async throws(ImageError) -> FileLock {
        do throws(SystemError) {
            return try await acquire(path, shared: shared)
        } catch {
            throw ImageError(error)
        }
    }
}

extension ImageError: SystemErrorConvertible {
    /// The error for a failed file operation of the shared systems layer.
    package init(_ error: SystemError) {
        self.init(code: error.errno == .noSuchFileOrDirectory ? .notFound : .io, errno: error.errno, detail: error.detail)
    }
}
