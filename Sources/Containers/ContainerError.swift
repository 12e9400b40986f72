public import ContainerKernel
import Images
import Layers
package import SystemSupport

/// The error every `Containers` operation throws.
///
/// It names the container and the operation, and keeps the lower layer's error when one
/// caused it (``underlying``), so `"\(error)"` reads like
/// `start 3f2a…: exec "/bin/nope": no such file or directory`.
public struct ContainerError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Storage: UInt8 { case invalidState, notFound, nameInUse, invalidArgument, image, layer, kernel, io, timeout, cancelled, notOwner, inUse }
        let storage: Storage

        /// The operation is not valid in the container's current state.
        public static var invalidState: Code { Code(storage: .invalidState) }
        /// No container has this id or name, or a path does not exist in the container.
        public static var notFound: Code { Code(storage: .notFound) }
        /// Another container already has this name.
        public static var nameInUse: Code { Code(storage: .nameInUse) }
        /// The configuration is malformed.
        public static var invalidArgument: Code { Code(storage: .invalidArgument) }
        /// Resolving or pulling the image failed (``ContainerError/underlying`` is an `ImageError`).
        public static var image: Code { Code(storage: .image) }
        /// Preparing the root filesystem failed (``ContainerError/underlying`` is a `LayerError`).
        public static var layer: Code { Code(storage: .layer) }
        /// Starting or controlling the process failed (``ContainerError/underlying`` is a `KernelError`).
        public static var kernel: Code { Code(storage: .kernel) }
        /// Reading or writing the container's state or logs failed.
        public static var io: Code { Code(storage: .io) }
        /// An operation did not finish in time.
        public static var timeout: Code { Code(storage: .timeout) }
        /// The calling task was cancelled; what the operation had made is undone.
        public static var cancelled: Code { Code(storage: .cancelled) }
        /// The container is embedded in another live process, which alone starts, pauses,
        /// updates, renames and removes it; this one may inspect, exec into and signal it.
        public static var notOwner: Code { Code(storage: .notOwner) }
        /// Something is still used: a volume that containers mount (``ContainerError/container``
        /// names them).
        public static var inUse: Code { Code(storage: .inUse) }

        public var description: String { "\(storage)" }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The container's id or name, when one is concerned (for ``Code/inUse``, the names of
    /// the containers that use the object, comma-separated).
    public var container: String?
    /// What was being attempted.
    public var detail: String
    /// The lower layer's error that caused this one.
    public var underlying: (any Error & Sendable)?

    /// Creates an error.
    public init(code: Code, container: String? = nil, detail: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.container = container
        self.detail = detail
        self.underlying = underlying
    }

    /// The error of the kernel layer, when that is what failed (its `stage` tells
    /// an exec failure from others).
    public var kernelError: KernelError? { underlying as? KernelError }

    public var description: String {
        let head = container.map { "\(detail) \($0)" } ?? detail
        return underlying.map { "\(head): \($0)" } ?? head
    }
}

/// Runs `body`, wrapping what a lower layer throws into a ``ContainerError`` that says what
/// was being attempted.
func wrapping<T>(_ detail: @autoclosure () -> String, container: String? = nil, _ body: () throws -> T)
    throws(ContainerError) -> T
{
    do {
        return try body()
    } catch let error as ContainerError {
        throw error
    } catch {
        throw ContainerError(code: code(of: error), container: container, detail: detail(), underlying: error)
    }
}

/// The async form of ``wrapping(_:container:_:)``.
func wrapping<T>(_ detail: @autoclosure () -> String, container: String? = nil, _ body: () async throws -> T)
    async throws(ContainerError) -> T
{
    do {
        return try await body()
    } catch let error as ContainerError {
        throw error
    } catch {
        throw ContainerError(code: code(of: error), container: container, detail: detail(), underlying: error)
    }
}

private func code(of error: any Error) -> ContainerError.Code {
    switch error {
    case is ImageError: .image
    case is LayerError: .layer
    case is KernelError: .kernel
    default: .io
    }
}

extension ContainerError: SystemErrorConvertible {
    /// The error for a failed file operation of the shared systems layer (the runtime's own
    /// files), keeping it as ``underlying``.
    package init(_ error: SystemError) {
        let code: Code =
            switch error.kind {
            case .mountPoint, .heldByThisThread: .inUse
            case .failed where error.errno == .noSuchFileOrDirectory: .notFound
            default: .io
            }
        self.init(code: code, detail: error.detail, underlying: error)
    }
}
