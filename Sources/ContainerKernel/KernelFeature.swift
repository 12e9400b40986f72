import CSyscalls
import Glibc
import SystemPackage

/// A system call Berth relies on that a kernel (or a seccomp filter around the embedding
/// process) may not provide.
///
/// Berth supports Linux 5.12 and later, which has all of them. A missing one is found by a
/// probe before it is needed, and reported as ``KernelError/Code/unsupported`` naming the
/// feature, never as `ENOSYS` from deep inside a spawn. A feature is usually missing because
/// the embedding process itself runs under a seccomp filter: Docker's default profile, for one,
/// answers `ENOSYS` to `clone3`.
///
/// | Feature | Linux | Needed for | Without it |
/// |---|---|---|---|
/// | ``openat2`` | 5.6 | every path inside a container's root | no container starts |
/// | ``clone3`` | 5.3 | every start (`CLONE_INTO_CGROUP`, a pidfd) | no container starts |
/// | ``closeRange`` | 5.9 | closing what a child was not given | no container starts |
/// | ``pidfdOpen``, ``pidfdSendSignal`` | 5.3, 5.1 | holding and signalling processes | no container starts |
/// | ``mountSetattr`` | 5.12 | read-only, `nosuid`, `nodev`, `noexec` mounts | no container starts |
/// | ``fsopen`` | 5.2 | overlay with `lowerdir+` (6.8) | overlay takes the classic options |
/// | ``execveat``, ``memfdCreate`` | 3.19, 3.17 | the embedded supervisor | programs are exec'd directly; detached containers and the exec trampoline are refused |
///
/// ```swift
/// let missing = KernelFeature.allCases.filter { !$0.isAvailable }
/// ```
public enum KernelFeature: String, CaseIterable, Sendable, CustomStringConvertible {
    /// `openat2(2)`: path resolution that stays inside a directory.
    case openat2
    /// `clone3(2)`: the clone that places a child in its cgroup and returns a pidfd.
    case clone3
    /// `close_range(2)`.
    case closeRange = "close_range"
    /// `pidfd_open(2)`.
    case pidfdOpen = "pidfd_open"
    /// `pidfd_send_signal(2)`.
    case pidfdSendSignal = "pidfd_send_signal"
    /// `mount_setattr(2)`: mount flags changed without losing the locked ones.
    case mountSetattr = "mount_setattr"
    /// `fsopen(2)` and the rest of the new mount API.
    case fsopen
    /// `execveat(2)`: running the embedded supervisor from its memfd.
    case execveat
    /// `memfd_create(2)` with sealing.
    case memfdCreate = "memfd_create"

    /// The system call's name, as in its manual page (`close_range`).
    public var description: String { rawValue }

    /// The first Linux release with the feature.
    public var minimumLinux: String {
        switch self {
        case .openat2: "5.6"
        case .clone3, .pidfdOpen: "5.3"
        case .closeRange: "5.9"
        case .pidfdSendSignal: "5.1"
        case .mountSetattr: "5.12"
        case .fsopen: "5.2"
        case .execveat: "3.19"
        case .memfdCreate: "3.17"
        }
    }

    /// Whether this process can use it (probed once, by a call that has no effect).
    public var isAvailable: Bool { Self.probed[self] ?? true }

    private var probe: ck_feature {
        switch self {
        case .openat2: CK_FEATURE_OPENAT2
        case .clone3: CK_FEATURE_CLONE3
        case .closeRange: CK_FEATURE_CLOSE_RANGE
        case .pidfdOpen: CK_FEATURE_PIDFD_OPEN
        case .pidfdSendSignal: CK_FEATURE_PIDFD_SEND_SIGNAL
        case .mountSetattr: CK_FEATURE_MOUNT_SETATTR
        case .fsopen: CK_FEATURE_FSOPEN
        case .execveat: CK_FEATURE_EXECVEAT
        case .memfdCreate: CK_FEATURE_MEMFD_CREATE
        }
    }

    private static let probed: [KernelFeature: Bool] = Dictionary(uniqueKeysWithValues: allCases.map { feature in
        let error = ck_feature_errno(Int32(bitPattern: feature.probe.rawValue))
        return (feature, error != ENOSYS && error != EPERM)
    })

    /// What every spawn needs; one with a root filesystem also needs ``mountSetattr``.
    static let forSpawn: [KernelFeature] = [.openat2, .clone3, .closeRange, .pidfdOpen, .pidfdSendSignal]

    /// Throws ``KernelError/Code/unsupported`` naming the first of `features` this process lacks.
    ///
    /// - Parameters:
    ///   - features: What the caller is about to rely on.
    ///   - purpose: What it is for, as in "starting a process".
    static func require(_ features: [KernelFeature], to purpose: String) throws(KernelError) {
        guard let missing = features.first(where: { !$0.isAvailable }) else { return }
        throw KernelError(
            code: .unsupported, errno: .noFunction,
            detail: "\(purpose) needs \(missing) (Linux \(missing.minimumLinux)), which this process cannot use: the kernel is older, or a seccomp filter around this process refuses it")
    }
}
