import CChildPath
import Glibc
public import SystemPackage
package import SystemSupport

/// The error every `ContainerKernel` operation throws.
///
/// It names what was being attempted (``detail``), the step of the container's init sequence
/// when the failure happened inside the child (``stage``), and the kernel's error number
/// (``errno``) when there is one.
///
/// ```swift
/// do { _ = try await ProcessSpawner.shared.spawn(spec) }
/// catch let error as KernelError where error.code == .initFailed {
///     print(error)   // exec "/bin/nope": no such file or directory
/// }
/// ```
public struct KernelError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Storage: UInt8 {
            case syscallFailed, initFailed, protocolViolation, unsupported, invalidArgument, invalidState, timedOut
        }
        let storage: Storage

        /// A system call made by the host process failed.
        public static var syscallFailed: Code { Code(storage: .syscallFailed) }
        /// A step of the child's init sequence (before `execve`) failed; ``KernelError/stage`` says which.
        public static var initFailed: Code { Code(storage: .initFailed) }
        /// The child broke the parent–child handshake (for example it died before reporting).
        public static var protocolViolation: Code { Code(storage: .protocolViolation) }
        /// The running kernel or machine lacks a feature the request needs.
        public static var unsupported: Code { Code(storage: .unsupported) }
        /// The request itself is malformed (a bad name, path, value or profile).
        public static var invalidArgument: Code { Code(storage: .invalidArgument) }
        /// The operation is not valid in the object's current state.
        public static var invalidState: Code { Code(storage: .invalidState) }
        /// A deadline passed (for example ``ProcessSpec/initTimeout``); the child was killed.
        public static var timedOut: Code { Code(storage: .timedOut) }

        public var description: String { "\(storage)" }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The init step that failed inside the child, when the failure happened there.
    public var stage: InitStage?
    /// The kernel's error number, when there is one.
    public var errno: Errno?
    /// What was being attempted, naming the object (a path, a syscall, a file).
    public var detail: String

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: The kind of failure.
    ///   - stage: The init step that failed inside the child, if any.
    ///   - errno: The kernel's error number, if any.
    ///   - detail: What was being attempted, naming the object.
    public init(code: Code, stage: InitStage? = nil, errno: Errno? = nil, detail: String) {
        self.code = code
        self.stage = stage
        self.errno = errno
        self.detail = detail
    }

    /// A lower-case message a user can act on, such as
    /// `exec "/bin/nope": no such file or directory`.
    public var description: String {
        var text = detail
        if let errno { text += ": \(SystemError.message(for: errno))" }
        return text
    }
}

/// A step of the child's init sequence, as reported by the C shim when it fails.
public enum InitStage: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case handshake, joinNamespace = "setns", stdio, session = "setsid", mountPropagation = "mount propagation"
    case rootfs, mount, devices, pivotRoot = "pivot_root", readOnlyRoot = "read-only rootfs"
    case hostname, sysctl, maskedPaths = "masked paths", readOnlyPaths = "read-only paths"
    case terminal, workingDirectory = "chdir", umask, closeFiles = "close fds"
    case capabilities, identity = "setuid/setgid", noNewPrivileges = "no_new_privs", seccomp, exec, clone, supervisor

    public var description: String { rawValue }

    /// The stage the shim reports (`enum ck_stage`), mapped by value: `nil` for a value this
    /// build does not know.
    init?(ck value: Int32) {
        let stages: [UInt32: InitStage] = [
            CK_STAGE_HANDSHAKE.rawValue: .handshake, CK_STAGE_SETNS.rawValue: .joinNamespace,
            CK_STAGE_STDIO.rawValue: .stdio, CK_STAGE_SETSID.rawValue: .session,
            CK_STAGE_PROPAGATION.rawValue: .mountPropagation, CK_STAGE_ROOTFS.rawValue: .rootfs,
            CK_STAGE_MOUNT.rawValue: .mount, CK_STAGE_DEVICES.rawValue: .devices,
            CK_STAGE_PIVOT_ROOT.rawValue: .pivotRoot, CK_STAGE_READONLY_ROOT.rawValue: .readOnlyRoot,
            CK_STAGE_HOSTNAME.rawValue: .hostname, CK_STAGE_SYSCTL.rawValue: .sysctl,
            CK_STAGE_MASKED_PATHS.rawValue: .maskedPaths, CK_STAGE_READONLY_PATHS.rawValue: .readOnlyPaths,
            CK_STAGE_TERMINAL.rawValue: .terminal, CK_STAGE_CHDIR.rawValue: .workingDirectory,
            CK_STAGE_UMASK.rawValue: .umask, CK_STAGE_CLOSE_FDS.rawValue: .closeFiles,
            CK_STAGE_CAPABILITIES.rawValue: .capabilities, CK_STAGE_IDENTITY.rawValue: .identity,
            CK_STAGE_NO_NEW_PRIVS.rawValue: .noNewPrivileges, CK_STAGE_SECCOMP.rawValue: .seccomp,
            CK_STAGE_EXEC.rawValue: .exec, CK_STAGE_CLONE.rawValue: .clone, CK_STAGE_SUPERVISOR.rawValue: .supervisor,
        ]
        guard let stage = stages[UInt32(bitPattern: value)] else { return nil }
        self = stage
    }
}


extension KernelError: SystemErrorConvertible {
    /// The error for a failed file operation of the shared systems layer.
    package init(_ error: SystemError) {
        self.init(code: .syscallFailed, errno: error.errno, detail: error.detail)
    }
}
