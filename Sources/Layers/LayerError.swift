import Glibc
public import SystemPackage
package import SystemSupport

/// The error every `Layers` operation throws.
///
/// It names the layer (``layer``, a chain or diff ID), the tar entry or path that failed
/// (``entry``), and the kernel's error number when there is one:
///
/// ```swift
/// do { _ = try await store.unpack(diffID: id, parentChainID: nil, from: .file(path), compression: .gzip) }
/// catch let error as LayerError where error.code == .unsafeEntry {
///     print(error)   // layer sha256:ab…: entry "../../etc/passwd" escapes the root
/// }
/// ```
public struct LayerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Storage: UInt8 {
            case unsafeEntry, invalidArchive, digestMismatch, notFound, inUse, io, unsupported, invalidArgument, unexpectedFile
            case tooLarge
        }
        let storage: Storage

        /// A tar entry would land outside the layer's root (a `../` path above the root, a hard
        /// link to a target outside the layer).
        public static var unsafeEntry: Code { Code(storage: .unsafeEntry) }
        /// The stream is not a tar archive in the expected compression, or it is truncated.
        public static var invalidArchive: Code { Code(storage: .invalidArchive) }
        /// The uncompressed stream's SHA-256 differs from the diff ID it was unpacked as.
        public static var digestMismatch: Code { Code(storage: .digestMismatch) }
        /// The layer, parent layer or path does not exist.
        public static var notFound: Code { Code(storage: .notFound) }
        /// The layer is still used by a snapshot or by a child layer.
        public static var inUse: Code { Code(storage: .inUse) }
        /// A file system operation failed; ``LayerError/errno`` says why.
        public static var io: Code { Code(storage: .io) }
        /// The kernel or file system lacks a feature the operation needs.
        public static var unsupported: Code { Code(storage: .unsupported) }
        /// The request itself is malformed (a bad digest or chain ID).
        public static var invalidArgument: Code { Code(storage: .invalidArgument) }
        /// A path of a tree being read is not the regular file expected there: a FIFO, device,
        /// socket or symlink, or another file than the one checked a moment before (a running
        /// container can change its files while they are read). Nothing of it was read.
        public static var unexpectedFile: Code { Code(storage: .unexpectedFile) }
        /// A file is larger than the runtime accepts for it (a container's `/etc/passwd` above
        /// its cap).
        public static var tooLarge: Code { Code(storage: .tooLarge) }

        public var description: String { "\(storage)" }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The layer being worked on (`sha256:…` chain ID or diff ID), when there is one.
    public var layer: String?
    /// The tar entry or path that failed, when there is one.
    public var entry: String?
    /// The kernel's error number, when there is one.
    public var errno: Errno?
    /// What was being attempted or what is wrong, in lower case, naming the entry:
    /// `entry "../x" escapes the root`, `create "etc/passwd"`.
    public var detail: String

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: The kind of failure.
    ///   - layer: The layer being worked on, if any.
    ///   - entry: The tar entry or path that failed, if any.
    ///   - errno: The kernel's error number, if any.
    ///   - detail: What was being attempted or what is wrong.
    public init(code: Code, layer: String? = nil, entry: String? = nil, errno: Errno? = nil, detail: String) {
        self.code = code
        self.layer = layer
        self.entry = entry
        self.errno = errno
        self.detail = detail
    }

    /// A lower-case message naming the layer and the entry, such as
    /// `layer sha256:ab…: entry "../../etc/passwd" escapes the root`.
    public var description: String {
        var parts: [String] = []
        if let layer { parts.append("layer \(layer)") }
        parts.append(detail)
        if let errno { parts.append(SystemError.message(for: errno)) }
        return parts.joined(separator: ": ")
    }

    /// The same error, attributed to `layer` unless it already names one.
    func inLayer(_ layer: String) -> LayerError {
        var copy = self
        if copy.layer == nil { copy.layer = layer }
        return copy
    }
}


extension LayerError: SystemErrorConvertible {
    /// The error for a failed file operation of the shared systems layer, naming its path.
    package init(_ error: SystemError) {
        let code: Code =
            switch error.kind {
            case .unexpectedFile: .unexpectedFile
            case .tooLarge: .tooLarge
            case .mountPoint, .heldByThisThread: .inUse
            case .failed: error.errno == .noSuchFileOrDirectory ? .notFound : .io
            }
        self.init(code: code, entry: error.path, errno: error.errno, detail: error.detail)
    }
}
