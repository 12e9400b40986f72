import CCap
import Glibc

/// One Linux capability, such as `CAP_NET_BIND_SERVICE`.
///
/// Names are accepted with or without the `CAP_` prefix and in any case, as Docker accepts them
/// (`--cap-add net_admin`).
///
/// Encoded as its name (`"CAP_NET_ADMIN"`), so that a stored configuration reads the same on
/// a kernel that numbers differently or lacks the capability.
public struct Capability: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    /// The kernel's number for the capability (`CAP_CHOWN` is 0).
    public var rawValue: Int32

    /// Wraps a capability number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Looks a capability up by name (`"CAP_CHOWN"`, `"chown"`).
    ///
    /// - Throws: ``KernelError`` with code ``KernelError/Code/invalidArgument`` when the name is
    ///   unknown to libcap.
    public init(named name: String) throws(KernelError) {
        var upper = name.uppercased()
        if !upper.hasPrefix("CAP_") { upper = "CAP_" + upper }
        var value: cap_value_t = 0
        guard cap_from_name(upper.lowercased(), &value) == 0, value >= 0 else {
            throw KernelError(code: .invalidArgument, detail: "unknown capability \"\(name)\"")
        }
        self.rawValue = value
    }

    /// The capability's name in upper case with the `CAP_` prefix, as Docker prints it.
    public var name: String {
        guard let cName = cap_to_name(cap_value_t(rawValue)) else { return "CAP_\(rawValue)" }
        defer { cap_free(cName) }
        return String(cString: cName).uppercased()
    }

    public var description: String { name }

    public static func < (lhs: Capability, rhs: Capability) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Decodes a capability from its name.
    ///
    /// - Throws: `DecodingError.dataCorrupted` for a name libcap does not know.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        do {
            try self.init(named: name)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.detail)
        }
    }

    /// Encodes the capability as its ``name``.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }

    /// The highest capability number the running kernel knows (`/proc/sys/kernel/cap_last_cap`).
    public static var lastSupported: Capability { Capability(rawValue: Int32(cap_max_bits()) - 1) }

    /// Every capability the kernel knows that this process can still pass on (those in its
    /// bounding set): what `--privileged` grants. A capability missing from the host process's
    /// bounding set (`CAP_SYS_RESOURCE` on some CI machines) cannot be given to a child.
    public static var all: Set<Capability> {
        Set((0...lastSupported.rawValue).filter { cap_get_bound(cap_value_t($0)) == 1 }
            .map(Capability.init(rawValue:)))
    }

    /// Parses Docker's `--cap-add` and `--cap-drop` lists: each name as ``init(named:)``
    /// takes it, and `ALL` (in any case) for every capability (``all``).
    ///
    /// - Parameter names: The names.
    /// - Returns: The capabilities.
    /// - Throws: ``KernelError`` with code ``KernelError/Code/invalidArgument`` naming the first
    ///   unknown name.
    public static func parsing(_ names: [String]) throws(KernelError) -> Set<Capability> {
        if names.contains(where: { $0.uppercased() == "ALL" }) { return all }
        var result: Set<Capability> = []
        for name in names { result.insert(try Capability(named: name)) }
        return result
    }

    // Every capability Linux defines, by number; a kernel older than the one that added a
    // capability cannot grant it (``lastSupported``).
    /// Change file owners (`CAP_CHOWN`).
    public static let chown = Capability(rawValue: 0)
    /// Bypass file permission checks (`CAP_DAC_OVERRIDE`).
    public static let dacOverride = Capability(rawValue: 1)
    /// Bypass read and search permission checks (`CAP_DAC_READ_SEARCH`).
    public static let dacReadSearch = Capability(rawValue: 2)
    /// Bypass checks that need the file's owner (`CAP_FOWNER`).
    public static let fowner = Capability(rawValue: 3)
    /// Keep set-user-id and set-group-id bits on modification (`CAP_FSETID`).
    public static let fsetid = Capability(rawValue: 4)
    /// Signal any process (`CAP_KILL`).
    public static let kill = Capability(rawValue: 5)
    /// Change group ids (`CAP_SETGID`).
    public static let setgid = Capability(rawValue: 6)
    /// Change user ids (`CAP_SETUID`).
    public static let setuid = Capability(rawValue: 7)
    /// Change capability sets and the bounding set (`CAP_SETPCAP`).
    public static let setpcap = Capability(rawValue: 8)
    /// Set the immutable and append-only file attributes (`CAP_LINUX_IMMUTABLE`).
    public static let linuxImmutable = Capability(rawValue: 9)
    /// Bind ports below 1024 (`CAP_NET_BIND_SERVICE`).
    public static let netBindService = Capability(rawValue: 10)
    /// Broadcast and listen to multicast (`CAP_NET_BROADCAST`).
    public static let netBroadcast = Capability(rawValue: 11)
    /// Configure interfaces, routes and firewalls (`CAP_NET_ADMIN`).
    public static let netAdmin = Capability(rawValue: 12)
    /// Use raw and packet sockets (`CAP_NET_RAW`).
    public static let netRaw = Capability(rawValue: 13)
    /// Lock memory (`CAP_IPC_LOCK`).
    public static let ipcLock = Capability(rawValue: 14)
    /// Bypass System V IPC permission checks (`CAP_IPC_OWNER`).
    public static let ipcOwner = Capability(rawValue: 15)
    /// Load and unload kernel modules (`CAP_SYS_MODULE`).
    public static let sysModule = Capability(rawValue: 16)
    /// Raw I/O to ports and devices (`CAP_SYS_RAWIO`).
    public static let sysRawio = Capability(rawValue: 17)
    /// Call `chroot` (`CAP_SYS_CHROOT`).
    public static let sysChroot = Capability(rawValue: 18)
    /// Trace any process (`CAP_SYS_PTRACE`).
    public static let sysPtrace = Capability(rawValue: 19)
    /// Switch process accounting (`CAP_SYS_PACCT`).
    public static let sysPacct = Capability(rawValue: 20)
    /// Mount, and much of the kernel's administration (`CAP_SYS_ADMIN`).
    public static let sysAdmin = Capability(rawValue: 21)
    /// Reboot and load a new kernel (`CAP_SYS_BOOT`).
    public static let sysBoot = Capability(rawValue: 22)
    /// Raise priorities and set real-time scheduling (`CAP_SYS_NICE`).
    public static let sysNice = Capability(rawValue: 23)
    /// Override resource limits (`CAP_SYS_RESOURCE`).
    public static let sysResource = Capability(rawValue: 24)
    /// Set the system clock (`CAP_SYS_TIME`).
    public static let sysTime = Capability(rawValue: 25)
    /// Configure terminals (`CAP_SYS_TTY_CONFIG`).
    public static let sysTtyConfig = Capability(rawValue: 26)
    /// Create device nodes (`CAP_MKNOD`).
    public static let mknod = Capability(rawValue: 27)
    /// Take file leases (`CAP_LEASE`).
    public static let lease = Capability(rawValue: 28)
    /// Write to the audit log (`CAP_AUDIT_WRITE`).
    public static let auditWrite = Capability(rawValue: 29)
    /// Configure auditing (`CAP_AUDIT_CONTROL`).
    public static let auditControl = Capability(rawValue: 30)
    /// Set file capabilities (`CAP_SETFCAP`).
    public static let setfcap = Capability(rawValue: 31)
    /// Override a mandatory access control policy (`CAP_MAC_OVERRIDE`).
    public static let macOverride = Capability(rawValue: 32)
    /// Configure a mandatory access control policy (`CAP_MAC_ADMIN`).
    public static let macAdmin = Capability(rawValue: 33)
    /// Read and configure the kernel log (`CAP_SYSLOG`).
    public static let syslog = Capability(rawValue: 34)
    /// Set alarms that wake the system (`CAP_WAKE_ALARM`).
    public static let wakeAlarm = Capability(rawValue: 35)
    /// Block system suspend (`CAP_BLOCK_SUSPEND`).
    public static let blockSuspend = Capability(rawValue: 36)
    /// Read the audit log (`CAP_AUDIT_READ`, Linux 3.16).
    public static let auditRead = Capability(rawValue: 37)
    /// Use performance monitoring (`CAP_PERFMON`, Linux 5.8).
    public static let perfmon = Capability(rawValue: 38)
    /// Load BPF programs and maps (`CAP_BPF`, Linux 5.8).
    public static let bpf = Capability(rawValue: 39)
    /// Checkpoint and restore processes (`CAP_CHECKPOINT_RESTORE`, Linux 5.9).
    public static let checkpointRestore = Capability(rawValue: 40)

    /// Docker's default set of 14 capabilities (`CapEff: 00000000a80425fb`).
    public static let dockerDefault: Set<Capability> = [
        .chown, .dacOverride, .fowner, .fsetid, .kill, .setgid, .setuid, .setpcap,
        .netBindService, .netRaw, .sysChroot, .mknod, .auditWrite, .setfcap,
    ]
}

/// The five capability sets of a process.
///
/// By default all of bounding, effective and permitted hold Docker's 14 capabilities, and
/// inheritable and ambient are empty, which is what `docker run` gives a root process.
public struct CapabilitySets: Sendable, Hashable {
    /// Capabilities the process can ever regain (`PR_CAPBSET_DROP` removes the rest).
    public var bounding: Set<Capability>
    /// Capabilities the kernel checks.
    public var effective: Set<Capability>
    /// Capabilities the process may make effective.
    public var permitted: Set<Capability>
    /// Capabilities kept across `execve` of a file with matching inheritable file capabilities.
    public var inheritable: Set<Capability>
    /// Capabilities kept across `execve` for unprivileged programs (`PR_CAP_AMBIENT`).
    public var ambient: Set<Capability>

    /// Creates capability sets.
    public init(
        bounding: Set<Capability>, effective: Set<Capability>, permitted: Set<Capability>,
        inheritable: Set<Capability> = [], ambient: Set<Capability> = []
    ) {
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient
    }

    /// The same set in bounding, effective and permitted; nothing inheritable or ambient.
    public init(_ capabilities: Set<Capability>) {
        self.init(bounding: capabilities, effective: capabilities, permitted: capabilities)
    }

    /// What `docker run` gives a process by default.
    public static var dockerDefault: CapabilitySets { CapabilitySets(Capability.dockerDefault) }

    /// Every capability this process can pass on, as `--privileged` gives.
    public static var all: CapabilitySets { CapabilitySets(Capability.all) }

    /// Adds and drops capabilities the way `--cap-add` and `--cap-drop` do, on every set that
    /// holds them.
    ///
    /// - Parameters:
    ///   - add: Capabilities to grant.
    ///   - drop: Capabilities to remove; dropping wins over adding.
    /// - Returns: The adjusted sets.
    public func adding(_ add: Set<Capability>, dropping drop: Set<Capability> = []) -> CapabilitySets {
        var copy = self
        copy.bounding = bounding.union(add).subtracting(drop)
        copy.effective = effective.union(add).subtracting(drop)
        copy.permitted = permitted.union(add).subtracting(drop)
        copy.inheritable = inheritable.subtracting(drop)
        copy.ambient = ambient.subtracting(drop)
        return copy
    }
}

extension Set where Element == Capability {
    /// The set as the kernel's 64-bit mask, as `/proc/<pid>/status` prints it.
    package var mask: UInt64 { reduce(0) { $0 | (1 << UInt64($1.rawValue)) } }
}
