import Glibc

/// One mount in the container's filesystem, applied in order before `pivot_root`, with its
/// target resolved inside the root filesystem (symlinks cannot lead it out).
public struct Mount: Sendable, Hashable {
    /// What is mounted.
    public enum Source: Sendable, Hashable {
        /// A host path, bind-mounted (recursively when ``Options/recursive`` is set).
        case bind(String)
        /// A new instance of a filesystem: `type` (`"tmpfs"`, `"proc"`), its source label and
        /// mount data (`"mode=755,size=65536k"`).
        case filesystem(type: String, source: String, data: String?)
    }

    /// Mount flags.
    public struct Options: OptionSet, Sendable, Hashable {
        /// The flag bits.
        public var rawValue: UInt32
        /// Wraps flag bits.
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Read-only (`MS_RDONLY`).
        public static let readOnly = Options(rawValue: UInt32(MS_RDONLY))
        /// Ignore set-user-id bits (`MS_NOSUID`).
        public static let noSetuid = Options(rawValue: UInt32(MS_NOSUID))
        /// No device files (`MS_NODEV`).
        public static let noDevices = Options(rawValue: UInt32(MS_NODEV))
        /// No execution (`MS_NOEXEC`).
        public static let noExec = Options(rawValue: UInt32(MS_NOEXEC))
        /// Bind the submounts too (`MS_REC`; `rbind`).
        public static let recursive = Options(rawValue: UInt32(MS_REC))
        /// Update access times strictly (`MS_STRICTATIME`).
        public static let strictAccessTime = Options(rawValue: UInt32(MS_STRICTATIME))
    }

    /// Mount propagation, as `mount --make-*`.
    public enum Propagation: Sendable, Hashable {
        case `private`, slave, shared, unbindable
        /// The same for every submount.
        case recursivePrivate, recursiveSlave, recursiveShared, recursiveUnbindable

        var flags: UInt32 {
            switch self {
            case .private: UInt32(MS_PRIVATE)
            case .slave: UInt32(MS_SLAVE)
            case .shared: UInt32(MS_SHARED)
            case .unbindable: UInt32(MS_UNBINDABLE)
            case .recursivePrivate: UInt32(MS_PRIVATE | MS_REC)
            case .recursiveSlave: UInt32(MS_SLAVE | MS_REC)
            case .recursiveShared: UInt32(MS_SHARED | MS_REC)
            case .recursiveUnbindable: UInt32(MS_UNBINDABLE | MS_REC)
            }
        }
    }

    /// What is mounted.
    public var source: Source
    /// The absolute path inside the container; created (as a directory, or a file when a file
    /// is bound) if missing.
    public var target: String
    /// Flags.
    public var options: Options
    /// Propagation of the new mount, `nil` to leave the default.
    public var propagation: Propagation?

    /// Creates a mount.
    public init(_ source: Source, at target: String, options: Options = [], propagation: Propagation? = nil) {
        self.source = source
        self.target = target
        self.options = options
        self.propagation = propagation
    }

    /// A bind mount of a host path, like `-v /host:/ctr[:ro]`.
    ///
    /// - Parameters:
    ///   - hostPath: The host file or directory.
    ///   - target: Where it appears in the container.
    ///   - readOnly: Whether writes are refused.
    ///   - recursive: Whether submounts of `hostPath` come along (`rbind`, Docker's default).
    public static func bind(_ hostPath: String, to target: String, readOnly: Bool = false, recursive: Bool = true)
        -> Mount
    {
        var options: Options = []
        if readOnly { options.insert(.readOnly) }
        if recursive { options.insert(.recursive) }
        return Mount(.bind(hostPath), at: target, options: options)
    }

    /// A tmpfs, like `--tmpfs /run:size=64m`.
    ///
    /// - Parameters:
    ///   - target: Where it appears in the container.
    ///   - data: tmpfs options (`"size=64m,mode=1777"`).
    ///   - options: Flags; by default `nosuid,nodev,noexec` as Docker uses.
    public static func tmpfs(
        _ target: String, data: String? = nil, options: Options = [.noSetuid, .noDevices, .noExec]
    ) -> Mount {
        Mount(.filesystem(type: "tmpfs", source: "tmpfs", data: data), at: target, options: options)
    }

    /// The mounts every container gets, as in the OCI runtime spec's default configuration and
    /// Docker: `/proc`, a tmpfs `/dev` with `pts`, `shm` and `mqueue`, and `/sys` read-only.
    public static var containerDefaults: [Mount] {
        [
            Mount(.filesystem(type: "proc", source: "proc", data: nil), at: "/proc",
                  options: [.noSetuid, .noExec, .noDevices]),
            Mount(.filesystem(type: "tmpfs", source: "tmpfs", data: "mode=755,size=65536k"), at: "/dev",
                  options: [.noSetuid, .strictAccessTime]),
            Mount(.filesystem(type: "devpts", source: "devpts",
                              data: "newinstance,ptmxmode=0666,mode=0620,gid=5"),
                  at: "/dev/pts", options: [.noSetuid, .noExec]),
            .tmpfs("/dev/shm", data: "mode=1777,size=65536k"),
            Mount(.filesystem(type: "mqueue", source: "mqueue", data: nil), at: "/dev/mqueue",
                  options: [.noSetuid, .noExec, .noDevices]),
            Mount(.filesystem(type: "sysfs", source: "sysfs", data: nil), at: "/sys",
                  options: [.noSetuid, .noExec, .noDevices, .readOnly]),
        ]
    }

    /// Paths hidden from the container (Docker's defaults): directories get an empty read-only
    /// tmpfs, files get `/dev/null`.
    ///
    /// `/proc/kcore` is always masked, even though the kernel refuses to open it without
    /// `CAP_SYS_RAWIO`: a granted capability must not expose the host's memory.
    public static let dockerMaskedPaths: [String] = [
        "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]

    /// Paths made read-only in the container (Docker's defaults).
    public static let dockerReadOnlyPaths: [String] = [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
    ]
}

/// A device node in the container's `/dev`.
public struct Device: Sendable, Hashable {
    /// The path inside the container, such as `/dev/null`.
    public var path: String
    /// Character device (`true`) or block device.
    public var isCharacter: Bool
    /// The device numbers.
    public var major: UInt32, minor: UInt32
    /// Permission bits (`0o666`).
    public var permissions: UInt32

    /// Describes a device node.
    public init(path: String, isCharacter: Bool = true, major: UInt32, minor: UInt32, permissions: UInt32 = 0o666) {
        self.path = path
        self.isCharacter = isCharacter
        self.major = major
        self.minor = minor
        self.permissions = permissions
    }

    /// The nodes every container gets: `null`, `zero`, `full`, `random`, `urandom`, `tty`.
    public static let containerDefaults: [Device] = [
        Device(path: "/dev/null", major: 1, minor: 3),
        Device(path: "/dev/zero", major: 1, minor: 5),
        Device(path: "/dev/full", major: 1, minor: 7),
        Device(path: "/dev/random", major: 1, minor: 8),
        Device(path: "/dev/urandom", major: 1, minor: 9),
        Device(path: "/dev/tty", major: 5, minor: 0),
    ]
}

/// A resource limit set on the process with `prlimit(2)` from the parent (the host process's
/// own limits are never touched).
///
/// Encoded with the `RLIMIT_*` number and the two values, as a container's stored
/// configuration keeps it.
public struct ResourceLimit: Sendable, Hashable, Codable {
    /// Which limit.
    public struct Resource: RawRepresentable, Sendable, Hashable, Codable {
        /// The `RLIMIT_*` number.
        public var rawValue: Int32
        /// Wraps an `RLIMIT_*` number.
        public init(rawValue: Int32) { self.rawValue = rawValue }

        /// Open files (`RLIMIT_NOFILE`).
        public static let openFiles = Resource(rawValue: Int32(RLIMIT_NOFILE.rawValue))
        /// Processes of the user (`RLIMIT_NPROC`).
        public static let processes = Resource(rawValue: 6)
        /// Core file size (`RLIMIT_CORE`).
        public static let coreFileSize = Resource(rawValue: Int32(RLIMIT_CORE.rawValue))
        /// Stack size (`RLIMIT_STACK`).
        public static let stackSize = Resource(rawValue: Int32(RLIMIT_STACK.rawValue))
        /// Address space (`RLIMIT_AS`).
        public static let addressSpace = Resource(rawValue: Int32(RLIMIT_AS.rawValue))
        /// CPU seconds (`RLIMIT_CPU`).
        public static let cpuTime = Resource(rawValue: Int32(RLIMIT_CPU.rawValue))
        /// Locked memory (`RLIMIT_MEMLOCK`).
        public static let lockedMemory = Resource(rawValue: 8)
        /// File size (`RLIMIT_FSIZE`).
        public static let fileSize = Resource(rawValue: Int32(RLIMIT_FSIZE.rawValue))
    }

    /// The limit's value for "unlimited" (`RLIM_INFINITY`).
    public static let unlimited = UInt64.max

    /// Which limit.
    public var resource: Resource
    /// The soft limit.
    public var soft: UInt64
    /// The hard limit (raising it above the host's needs `CAP_SYS_RESOURCE`).
    public var hard: UInt64

    /// Creates a limit, like `--ulimit nofile=1024:2048`.
    public init(_ resource: Resource, soft: UInt64, hard: UInt64) {
        self.resource = resource
        self.soft = soft
        self.hard = hard
    }
}
